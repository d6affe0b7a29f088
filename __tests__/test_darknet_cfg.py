import re

import pytest

from app.model.darknet_cfg import (
    CfgError,
    Shape,
    check_yolo_filters,
    convolution_output,
    detection_layers,
    layer_references,
    maxpool_output,
    network_input,
    parse_cfg,
    render_cfg,
    route_output,
    upsample_output,
)

CFG = """
[net]
# Testing
batch=1
width = 608
height=416
channels=3
letter_box=1

[convolutional]
filters=33
size=1

[yolo]
mask = 0,1,2
anchors = 10,14,  23,27
classes=6
classes=99
"""


def test_parses_as_darknet_does():
    sections = parse_cfg(CFG)
    assert [s.type for s in sections] == ["net", "convolutional", "yolo"]
    assert sections[0].options["width"] == "608"  # whitespace removed, as darknet's strip()
    assert sections[2].options["anchors"] == "10,14,23,27"
    assert sections[2].options["classes"] == "6"  # first occurrence wins, as option_find


def test_network_input_and_detection_layers():
    sections = parse_cfg(CFG)
    net = network_input(sections)
    assert (net.width, net.height, net.channels, net.letter_box) == (608, 416, 3, True)
    (layer,) = detection_layers(sections)
    assert (layer.type, layer.classes) == ("yolo", 6)


def test_render_round_trips():
    sections = parse_cfg(CFG)
    assert [(s.type, s.options) for s in parse_cfg(render_cfg(sections))] == [(s.type, s.options) for s in sections]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("width=416\n[net]", "before any [section]"),
        ("[convolutional]\nsize=1", "first section must be [net]"),
        ("[net]\nwidth=416\nheight=416\n[yolo\n", "malformed section"),
        ("[net]\nwidth416\n", "expected key=value"),
    ],
)
def test_malformed_cfg_is_a_clear_error(text, message):
    with pytest.raises(CfgError, match=re.escape(message)):
        parse_cfg(text)


def test_size_must_be_a_multiple_of_32():
    with pytest.raises(CfgError, match="multiples of 32"):
        network_input(parse_cfg("[net]\nwidth=400\nheight=416\n"))


def test_a_network_without_detection_layer_is_refused():
    with pytest.raises(CfgError, match="not a detection network"):
        detection_layers(parse_cfg("[net]\nwidth=416\nheight=416\n[convolutional]\nsize=1\n"))


YOLO_HEAD = """
[net]
width=416
height=416

[convolutional]
size=1
filters={filters}
activation=linear

[yolo]
{mask}anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=5
"""


def test_the_convolution_before_a_yolo_layer_must_make_classes_plus_5_per_anchor_in_its_mask():
    sections = parse_cfg(YOLO_HEAD.format(filters=255, mask="mask = 3,4,5\n"))
    with pytest.raises(CfgError) as error:
        check_yolo_filters(sections)
    assert str(error.value) == (
        "line 8: [convolutional] filters=255 before [yolo] (line 14) with classes=5 and 3 anchors in mask "
        "must be (5 + 5) x 3 = 30"
    )
    check_yolo_filters(parse_cfg(YOLO_HEAD.format(filters=30, mask="mask = 3,4,5\n")))


def test_without_a_mask_num_anchors_count_as_darknet_reads_them():
    # darknet's parse_yolo: no mask= means the first num= anchors, and num defaults to 1.
    with pytest.raises(CfgError, match=r"with classes=5 and 6 anchors \(no mask: num=\) must be \(5 \+ 5\) x 6 = 60"):
        check_yolo_filters(parse_cfg(YOLO_HEAD.format(filters=30, mask="num=6\n")))
    check_yolo_filters(parse_cfg(YOLO_HEAD.format(filters=60, mask="num=6\n")))
    check_yolo_filters(parse_cfg(YOLO_HEAD.format(filters=10, mask="")))


def test_shapes_follow_darknets_arithmetic():
    image = Shape(3, 416, 416)
    conv = parse_cfg("[net]\n[convolutional]\nfilters=16\nsize=3\nstride=2\npad=1\n")[1]
    assert convolution_output(conv, image) == Shape(16, 208, 208)
    # A stride-1 pool of size 2 keeps the size: darknet pads size - 1 in all, mostly after.
    pool = parse_cfg("[net]\n[maxpool]\nsize=2\nstride=1\n")[1]
    assert maxpool_output(pool, Shape(512, 13, 13)) == Shape(512, 13, 13)
    assert upsample_output(parse_cfg("[net]\n[upsample]\nstride=2\n")[1], Shape(128, 13, 13)) == Shape(128, 26, 26)
    route = parse_cfg("[net]\n[route]\nlayers=-1,8\ngroups=2\n")[1]
    assert layer_references(route, 20, "layers") == [19, 8]
    assert route_output(route, [Shape(128, 26, 26), Shape(256, 26, 26)]) == Shape(192, 26, 26)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[convolutional]\nfilters=16\nstride=0", "line 4: [convolutional] stride=0 must be at least 1"),
        ("[convolutional]\nfilters=16\nsize=5", "line 2: [convolutional] the input 3x416 is too small"),
        ("[upsample]\nstride=0", "line 3: [upsample] stride=0 must be at least 1"),
    ],
)
def test_a_layer_that_darknet_would_divide_by_zero_or_shrink_to_nothing_is_refused(text, message):
    section = parse_cfg("[net]\n" + text + "\n")[1]
    compute = upsample_output if section.type == "upsample" else convolution_output
    with pytest.raises(CfgError, match=re.escape(message)):
        compute(section, Shape(3, 3, 416))


@pytest.mark.parametrize(
    ("layers", "message"),
    [("-3", "refers to layer -1, not one of the 2 layers before it"), ("2", "refers to layer 2"), ("x", "numbers")],
)
def test_a_route_to_a_layer_that_is_not_there_names_its_line(layers, message):
    route = parse_cfg(f"[net]\n[route]\nlayers={layers}\n")[1]
    with pytest.raises(CfgError, match=f"line 3: \\[route\\] layers={layers} .*{message}"):
        layer_references(route, 2, "layers")

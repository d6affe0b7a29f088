import re

import pytest

from app.model.darknet_cfg import CfgError, detection_layers, network_input, parse_cfg, render_cfg

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

"""Property: no input a client can send makes the service answer 500."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CONTENT_TYPES = st.sampled_from(
    ["image/jpeg", "image/png", "image/webp", "image/tiff", "application/x-image", "application/json", "text/plain", ""]
)
# No subnormal floats: OpenCV sets flush-to-zero in this process, hypothesis refuses them.
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_subnormal=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
PARAMS = st.dictionaries(
    st.sampled_from(["threshold", "nms", "classes", "return_image", "detections", "filename", "tiling", "x"]),
    JSON_VALUES,
    max_size=4,
)
COMMON = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@COMMON
@given(body=st.binary(max_size=2048), content_type=CONTENT_TYPES)
def test_random_bytes_never_500(fake_client, body, content_type):
    response = fake_client.post("/invocations", data=body, content_type=content_type or None)
    assert response.status_code < 500, response.get_data(as_text=True)
    assert "error" in response.get_json() or response.status_code == 200


@COMMON
@given(document=JSON_VALUES | PARAMS.map(lambda p: {"image": "aGVsbG8=", **p}))
def test_random_json_never_500(fake_client, document):
    response = fake_client.post("/invocations", data=json.dumps(document), content_type="application/json")
    assert response.status_code < 500, response.get_data(as_text=True)
    assert set(response.get_json()) == {"error"}


@COMMON
@given(params=PARAMS)
def test_random_parameters_on_a_real_photo_never_500(client, params):
    query = {key: json.dumps(value) if not isinstance(value, str) else value for key, value in params.items()}
    response = client.post("/invocations", query_string=query, data=_tiny_png(), content_type="image/png")
    assert response.status_code in (200, 400), response.get_data(as_text=True)


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 80, 40)).save(buffer, "PNG")
    return buffer.getvalue()

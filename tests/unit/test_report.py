"""The demo quicklook shows the date a single-date mosaic shows."""

from cloudfree.demo.report import frame_date, pick_cloudy_date


def item(date=None, cover=0.0, when="2024-07-25T10:00:00Z"):
    expression = {"format": "json", "expression": {"method": "median"}}
    if date:
        expression["expression"].update(method="interpolate_corrected", frame_date=date)
    return {"properties": {"processing:expression": expression, "eo:cloud_cover": cover,
                           "datetime": when}}


def test_frame_date_of_single_date_mosaics_only():
    assert frame_date([item("2024-07-25")]) == "2024-07-25"
    assert frame_date([item(), item("2024-07-25")]) == "2024-07-25"
    assert frame_date([item()]) is None
    assert frame_date([{"properties": {}}]) is None


def test_pick_cloudy_date_is_the_date_nearest_40_percent():
    scenes = [item(cover=5, when="2024-06-01T10:00:00Z"), item(cover=45, when="2024-06-11T10:00:00Z"),
              item(cover=95, when="2024-06-21T10:00:00Z")]
    assert pick_cloudy_date(scenes) == "2024-06-11"

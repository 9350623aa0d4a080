"""HTML quick wins (issue 19): percentages, rule text with code blocks and emphasis, and no
internal module names. The view helpers are tested directly; one render checks the markup."""
from evalguard.catalogue import load_catalogue
from evalguard.facts import LoadFacts
from evalguard.findings import Report, TargetResult
from evalguard.reporters.html import display_class, percent, render, segments


def test_percentages_never_use_exponents():
    assert [percent(x) for x in (1.0, 0.29, 0.05, 0.012, 0.00012, 1e-7, 0)] == [
        "100%", "29%", "5%", "1.2%", "0.012%", "<0.01%", "0%"]
    assert percent("nan") == "nan"


def test_fenced_toml_stays_a_block_without_its_language_tag():
    paragraphs = segments(load_catalogue()["EG401"].fix)
    blocks = [p[0] for p in paragraphs if p[0]["block"]]
    assert len(blocks) == 1
    assert blocks[0]["text"].splitlines()[0] == "[tool.evalguard.tolerances]"
    assert "atol = 1e-4\nrtol = 1e-3" in blocks[0]["text"]
    assert not any(seg["text"].strip() == "toml" or "```" in seg["text"] for p in paragraphs for seg in p)


def test_emphasis_is_marked_but_arithmetic_and_code_are_not():
    [para] = segments("the *variance shift* of a*b and `x*y`, 2 * 3")
    assert [(s["text"], s["em"], s["code"]) for s in para] == [
        ("the ", False, False), ("variance shift", True, False), (" of a*b and ", False, False),
        ("x*y", False, True), (", 2 * 3", False, False)]


def test_factory_classes_are_named_after_their_file():
    assert display_class("_evalguard_factory_123.Net", "models/net.py:build") == "models/net.py:Net"
    assert display_class("torchvision.models.resnet.ResNet", "r.pt") == "torchvision.models.resnet.ResNet"


def test_rendered_report_has_no_internal_names_or_literal_markdown():
    target = TargetResult("examples/demo/model.py:build_model", "factory", "audited",
                          facts={"load": LoadFacts(format="factory", model_class="_evalguard_factory_9.Tiny")})
    html = render(Report((target,), ()))
    assert "_evalguard_factory_" not in html and "examples/demo/model.py:Tiny" in html

"""Target specs: one parser (names, 'a,b', regex, all-linear) and a matcher whose errors name real modules."""
import pytest

from lora_mini import tiny_model
from lora_mini.targets import closest_names, find_targets, parse_targets


@pytest.mark.parametrize("spec,want", [
    ("q_proj", ["q_proj"]),
    ("q_proj,v_proj", ["q_proj", "v_proj"]),
    (" q_proj , v_proj ", ["q_proj", "v_proj"]),
    (["q_proj", "v_proj"], ["q_proj", "v_proj"]),
    (("q_proj",), ["q_proj"]),
    ({"v_proj", "q_proj"}, ["q_proj", "v_proj"]),
    ("all-linear", "all-linear"),
    (r".*\.mlp\..*", r".*\.mlp\..*"),
    ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.q_proj"),   # dots: a regex
])
def test_parse_targets(spec, want):
    assert parse_targets(spec) == want


@pytest.mark.parametrize("spec,error,match", [
    ("", ValueError, "empty"),
    ("q_proj,", ValueError, "empty name"),
    ([], ValueError, "empty"),
    (["q_proj", ""], ValueError, "not a module name"),
    (["q_proj v_proj"], ValueError, "not a module name"),
    ("model.(", ValueError, "not a valid regex"),
    (42, TypeError, "module-name suffixes"),
    ([1], TypeError, "must be a string"),
])
def test_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        parse_targets(spec)


def test_find_targets_forms_agree():
    model = tiny_model()
    by_list = find_targets(model, ["q_proj", "v_proj"])
    assert len(by_list) == 4
    assert find_targets(model, "q_proj,v_proj") == by_list
    assert sorted(find_targets(model, r".*\.(q|v)_proj")) == sorted(by_list)
    assert "lm_head" not in find_targets(model, "all-linear") and len(find_targets(model, "all-linear")) == 14


def test_every_name_must_match_and_errors_name_real_modules():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"1 of 2 names.*'v_prj' \(closest: 'v_proj'"):
        find_targets(model, ["q_proj", "v_prj"])
    with pytest.raises(ValueError, match=r"regex.*matched no module.*'q_proj'"):
        find_targets(model, r".*nothing.*")


def test_closest_names_are_never_layer_indices():
    names = [n for n, _ in tiny_model().named_modules() if n]
    assert closest_names("1", names) == [] or all(not c.isdigit() for c in closest_names("1", names))
    assert closest_names("q_prj", names)[0] == "q_proj"
    assert closest_names("self_attn.q_prj", names)[0].endswith("self_attn.q_proj")


def test_gpt2_conv1d_names():
    model = tiny_model("gpt2")
    assert len(find_targets(model, "c_attn")) == 2
    with pytest.raises(ValueError, match="'c_atn' \\(closest: 'c_attn'"):
        find_targets(model, "c_atn")

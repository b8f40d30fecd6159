import pytest

from kafnotes.profiles import PROFILES, get_profile


def test_four_profiles_with_overrides():
    assert set(PROFILES) == {"smoke", "cpu", "study", "full"}
    p = get_profile("smoke", epochs=7, n_train=None)
    assert p["epochs"] == 7 and p["n_train"] == PROFILES["smoke"]["n_train"] and p["name"] == "smoke"
    assert PROFILES["smoke"]["epochs"] != 7  # the preset itself is untouched
    assert get_profile("full")["pgd_steps"] == 50 and get_profile("full")["pgd_restarts"] == 10
    assert get_profile("smoke")["data"] == "sample"


def test_unknown_profile_and_key():
    with pytest.raises(ValueError, match="valid profiles: smoke, cpu, study, full"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown profile keys"):
        get_profile("smoke", epoch=3)


def test_every_profile_sets_every_key():
    keys = [set(p) for p in PROFILES.values()]
    assert all(k == keys[0] for k in keys), "a key set in one profile must be set in all"
    assert get_profile("full")["apgd_steps"] == 100  # Croce and Hein's APGD budget at the thesis' scale
    # the diagnostics' APGD-CE/DLR on every image: AutoAttack's budget where it is affordable, PGD's at study
    assert [get_profile(n)["diagnostic_apgd_steps"] for n in ("smoke", "cpu", "study", "full")] == [10, 20, 20, 100]
    assert all(get_profile(n)["diagnostic_apgd_steps"] == get_profile(n)["apgd_steps"] for n in ("smoke", "cpu", "full"))
    study = get_profile("study")  # the published edition: every training and test image
    assert study["n_train"] is None and study["n_test"] is None and study["n_eval"] is None

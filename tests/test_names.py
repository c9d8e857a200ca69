"""Every CLI path that takes a registry name or a key suggests the nearest valid one, in any case."""

from __future__ import annotations

from pathlib import Path

import pytest

from darktrigger.daq.cli import main


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("names")
    assert main(["generate", "--generator", "toy", "--process", "sm_mix", "--events", "2k",
                 "--seed", "1", "--out", str(d / "bkg.h5"), "--no-progress"]) == 0
    return d


def _menu(d: Path) -> Path:
    path = d / "menu.yaml"
    path.write_text("seeds:\n  - {name: MET90, type: MET, met_min: 90}\n")
    return path


CASES = {
    # registry: (command line with {d} for the data folder, the nearest valid name suggested)
    "scorer (case)": (["train", "--model", "VAE", "--background", "{d}/bkg.h5", "--out", "{d}/m"], "'vae'"),
    "scorer (typo)": (["train", "--model", "vea", "--background", "{d}/bkg.h5", "--out", "{d}/m"], "'vae'"),
    "hyper-parameter": (["train", "--model", "vae", "--background", "{d}/bkg.h5", "--out", "{d}/m",
                         "--set", "latnet=3"], "'latent'"),
    "hyper-parameter (case)": (["train", "--model", "vae", "--background", "{d}/bkg.h5", "--out", "{d}/m",
                                "--set", "Latent=3"], "'latent'"),
    "generator": (["generate", "--generator", "Toy", "--process", "sm_mix", "--events", "10",
                   "--out", "{d}/g.h5"], "'toy'"),
    "process": (["generate", "--generator", "toy", "--process", "Ato4l", "--events", "10",
                 "--out", "{d}/g.h5"], "'ato4l'"),
    "reader": (["inspect", "{d}/bkg.h5", "--format", "Native"], "'native'"),
    "backend": (["evaluate", "--model", "{d}/m", "--background", "{d}/bkg.h5", "--signal", "a={d}/bkg.h5",
                 "--backend", "Torch"], "'torch'"),
    "seed type": (["menu", "rates", "--menu", "{d}/menu.yaml", "--events", "{d}/bkg.h5"], "'met'"),
}
# owned by other files than this test's change (replay/generators/base.py)
NOT_YET: set[str] = set()


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(
    strict=True, reason="generator process names: replay/generators/base.py does not use unknown_name yet"))
    if c in NOT_YET else c for c in CASES])
def test_misspelled_name_suggests_the_nearest(case: str, events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _menu(events)
    argv, nearest = CASES[case]
    try:  # argparse's own errors (a bad --backend) exit; a ConfigError returns 2
        rc = main([a.replace("{d}", str(events)) for a in argv])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"did you mean {nearest}?" in err, err
    assert err.rstrip().endswith("."), err  # a sentence, "Known: a, b." punctuated


@pytest.mark.parametrize(("text", "n"), [("2.3k", 2300), ("1e3", 1000), ("2k", 2000), ("1500", 1500), ("0.001M", 1000)])
def test_events_take_integer_valued_floats_and_suffixes(text: str, n: int, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--generator", "toy", "--process", "sm_mix", "--events", text,
                 "--out", str(tmp_path / "g.h5"), "--no-progress"]) == 0
    assert f"wrote {n:,} toy sm_mix events" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["1.5", "1e-3", "ten", "-5", "1x"])
def test_events_refuse_what_is_not_a_count(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--generator", "toy", "--process", "sm_mix", "--events", text,
              "--out", str(tmp_path / "g.h5")])
    assert exc.value.code == 2
    assert f"expected a whole number of events (e.g. 100000, 1e5, 100k, 1M), got {text!r}" in capsys.readouterr().err
    assert not (tmp_path / "g.h5").exists()


@pytest.mark.parametrize("spec", ["vae:MU2", "vae:mu"])
def test_variant_suggests_the_nearest(spec: str) -> None:
    from darktrigger.models import get_scorer
    from darktrigger.replay.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"did you mean 'mu2'\? Known: mu2, kl, reco\.$"):
        get_scorer(spec)
    with pytest.raises(UnknownNameError, match=r"did you mean 'mu2'\?"):
        get_scorer("vae").with_variant(spec.split(":")[1])

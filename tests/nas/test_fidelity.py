"""``nas fidelity``: rank agreement on rankings with known answers, and the command end to end on
the CPU (a real local Ray cluster, an SQLite study, a linked study written and resumed)."""

import signal
import time
from pathlib import Path

import optuna
import pytest

from nas.search.fidelity import LINK_ATTR, RankAgreement, rank_agreement
from nas.study.records import read_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = Path(__file__).parents[2] / "bench" / "data" / "tiny_space.yaml"
FAST = ["--train-images", "128", "--val-images", "64", "--epochs", "1", "--batch-size", "32", "--no-early-stopping"]
REFERENCE = ["--epochs", "2", "--train-images", "128", "--val-images", "64"]


# ---- rank agreement on hand-made rankings ------------------------------------------------------


def test_identical_rankings_agree_fully():
    a = rank_agreement([0.1, 0.5, 0.3, 0.9], [0.2, 0.6, 0.4, 0.8])
    assert a.kendall_tau == pytest.approx(1.0) and a.spearman_rho == pytest.approx(1.0)
    assert a.top_k == 1 and a.top_overlap == 1.0 and a.regret == 0.0 and a.proxy_best == a.reference_best == 3
    assert a.verdict().startswith("ranks like the reference: tau 1.00 over 4")


def test_reversed_ranking_has_full_regret_and_is_noise():
    a = rank_agreement([4, 3, 2, 1], [0.1, 0.2, 0.3, 0.4])
    assert a.kendall_tau == pytest.approx(-1.0) and a.top_overlap == 0.0
    assert a.regret == pytest.approx(0.3)  # the proxy picks the reference's worst
    assert a.verdict().startswith("ranking is noise at this fidelity (tau -1.00 over 4")
    assert "raise --epochs or --train-images" in a.verdict()


def test_one_swap_at_the_top():
    # 8 candidates, the two best swapped: 1 discordant pair of 28 -> tau = (27 - 1) / 28
    proxy = [1, 2, 3, 4, 5, 6, 8, 7]
    reference = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    a = rank_agreement(proxy, reference)
    assert a.kendall_tau == pytest.approx(26 / 28)
    assert a.top_k == 2 and a.top_overlap == 1.0  # both of the reference's top 2 are in the proxy's
    assert a.regret == pytest.approx(0.1) and a.proxy_best == 6 and a.reference_best == 7


def test_a_flat_proxy_has_no_ranking():
    a = rank_agreement([0.5] * 5, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert a.kendall_tau == 0.0 and a.kendall_p == 1.0 and "noise" in a.verdict()


def test_rough_agreement_says_so():
    a = RankAgreement(n=30, kendall_tau=0.4, kendall_p=0.002, spearman_rho=0.55, top_k=8, top_overlap=0.5,
                      regret=0.01, proxy_best=0, reference_best=1)
    assert a.verdict().startswith("ranks only roughly like the reference (tau 0.40 over 30")


def test_rank_agreement_refuses_too_few_or_mismatched():
    with pytest.raises(ValueError):
        rank_agreement([1, 2], [1, 2])
    with pytest.raises(ValueError):
        rank_agreement([1, 2, 3], [1, 2])


# ---- the reference a check trains at ------------------------------------------------------------


def _reference_of(study_name, db, **given):
    import argparse

    from nas.search.fidelity import check_fidelity

    args = dict(reseed=None, epochs=None, train_images=None, val_images=None, batch_size=None, lr=None, random=3,
                all=False, any_cost=False)
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{db}")
    return check_fidelity(study, argparse.Namespace(**{**args, **given}))[1]


def test_reseed_alone_keeps_the_studys_own_learning_rate(tmp_path):
    """pop-A (bench/data/refine_real.db) trained 1 epoch x 20,000 at --lr 0.1: its seed check must too, not
    at the default 0.025; an lr or a batch size given on the command line wins."""
    import shutil

    db = tmp_path / "refine_real.db"
    shutil.copy(Path(__file__).parents[2] / "bench" / "data" / "refine_real.db", db)
    ref = _reference_of("pop-A", db, reseed=1)
    assert (ref.epochs, ref.train_images, ref.lr, ref.train_seed) == (1, 20000, 0.1, 1)
    assert ref.tag() == "e1-n20000-v5000-b64-lr0.1-s1"
    assert _reference_of("pop-A", db, reseed=1, lr=0.2).lr == 0.2
    assert _reference_of("pop-A", db, reseed=1, batch_size=128).lr is None  # the default for batch 128
    assert _reference_of("pop-A", db).lr is None  # a reference check: the reference's own default lr
    # a study at the default lr keeps the linked study's name it always had (a recording resumes on it)
    shutil.copy(Path(__file__).parents[2] / "bench" / "data" / "proxy_fidelity.db", tmp_path / "pf.db")
    assert _reference_of("panel-resnext-cifar", tmp_path / "pf.db", reseed=1).tag() == "e3-n2000-v1000-b64-s1"


# ---- the command end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def parent(ray_cluster, tmp_path_factory):
    """A finished study: 4 trained candidates of the tiny space at a 1-epoch proxy."""
    from nas.cli import main

    db = tmp_path_factory.mktemp("fidelity") / "nas.db"
    code = main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "4", "--sampler", "random",
                 "--seed", "3", "--storage", str(db), "--study", "parent", *FAST])
    assert code == 0
    return db


def _study(db, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _names(db):
    return sorted(s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}"))


@pytest.mark.slow
def test_fidelity_retrains_the_sample_in_a_linked_study_and_reuses_it(parent, cli, ray_cluster):
    code, out, err = cli("fidelity", "--study", "parent", "--storage", parent, "--all", *REFERENCE)
    assert code == 0, err
    linked = "parent@fidelity-e2-n128-v64-b32-s0"
    assert linked in _names(parent)
    parent_trained = {r.get("arch_hash"): r for r in read_trials(_study(parent, "parent")) if r.outcome == "complete"}
    done = [r for r in read_trials(_study(parent, linked)) if r.trained]
    assert len(done) == len(parent_trained) == 4
    for r in done:  # the same architectures, retrained at the reference fidelity, linked to their trial
        assert r.outcome == "complete" and r.get("arch_hash") in parent_trained
        assert r.get(LINK_ATTR) == parent_trained[r.get("arch_hash")].number
        assert [c["epoch"] for c in r.curve] == [1, 2]
    link = _study(parent, linked).user_attrs[LINK_ATTR]
    assert link["study"] == "parent" and link["reference"]["epochs"] == 2 and len(link["trials"]) == 4
    assert "kendall tau" in out and "spearman rho" in out and "regret" in out
    verdict = [line for line in out.splitlines() if line.startswith("verdict: ")]
    assert len(verdict) == 1 and ("tau" in verdict[0] and "over 4" in verdict[0])
    # A second run trains nothing again and prints the same verdict.
    n_trials = len(_study(parent, linked).trials)
    code, out2, _ = cli("fidelity", "--study", "parent", "--storage", parent, "--all", *REFERENCE)
    assert code == 0 and len(_study(parent, linked).trials) == n_trials
    assert [line for line in out2.splitlines() if line.startswith("verdict: ")] == verdict


@pytest.mark.slow
def test_the_default_reference_validates_on_the_whole_split(parent, cli, ray_cluster):
    """Without --val-images the reference is judged on every validation image, not the search default."""
    from nas.study.records import read_settings

    code, out, err = cli("fidelity", "--study", "parent", "--storage", parent, "--random", "1",
                         "--epochs", "2", "--train-images", "128", "--max-concurrent", "1")
    assert code == 0, err
    settings = read_settings(_study(parent, "parent@fidelity-e2-n128-vall-b32-s0"))
    assert settings.val_images == 5000 and "/ 5,000 val images" in out


@pytest.mark.slow
def test_pareto_json_and_export_carry_the_uncertainty_and_the_reference(parent, cli, tmp_path, ray_cluster):
    import json

    import yaml

    code, out, _ = cli("pareto", "--study", "parent", "--storage", parent, "--json")
    members = json.loads(out)["front"]
    assert code == 0 and members
    for m in members:  # validated on 64 images: the standard error is sqrt(p (1 - p) / 64)
        p = m["values"]["accuracy"]
        assert m["val_images"] == 64 and m["accuracy_se"] == pytest.approx((p * (1 - p) / 64) ** 0.5)
        assert all(n in {x["trial"] for x in members} for n in m["within_noise_of"])
    # export names the reference accuracy once the candidate was retrained by nas fidelity
    assert cli("fidelity", "--study", "parent", "--storage", parent, "--all", *REFERENCE)[0] == 0
    code, _, err = cli("export", "--study", "parent", "--storage", parent, "--best", "-o", tmp_path / "best.yaml")
    assert code == 0, err
    prov = yaml.safe_load((tmp_path / "best.yaml").read_text())["provenance"]
    assert prov["metrics"]["val_images"] == 64 and prov["metrics"]["accuracy_se"] > 0
    refs = {r["study"]: r for r in prov["reference_accuracy"]}  # every linked study that retrained it
    ref = refs["parent@fidelity-e2-n128-v64-b32-s0"]
    assert ref["fidelity"]["epochs"] == 2
    assert 0 <= ref["accuracy"] <= 1


@pytest.mark.slow
def test_fidelity_resumes_after_sigkill(parent, tmp_path, search_process):
    """Killed while retraining, the re-run finishes the linked study: every sampled architecture
    trained once, none lost, none twice."""
    import sqlite3
    import subprocess
    import sys

    db = tmp_path / "copy.db"
    with sqlite3.connect(parent) as src, sqlite3.connect(db) as dst:  # with what is still in the WAL
        src.backup(dst)
    args = ["fidelity", "--study", "parent", "--storage", str(db), "--all", "--epochs", "3", "--train-images", "256",
            "--val-images", "64", "--max-concurrent", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    linked = "parent@fidelity-e3-n256-v64-b32-s0"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                trials = _study(db, linked).trials
            except Exception:  # not created yet
                trials = []
            if any(t.state.name == "COMPLETE" for t in trials):
                break
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        import os

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = [r for r in read_trials(_study(db, linked)) if r.outcome == "complete"]
    assert 1 <= len(before) < 4
    out = subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    after = [r for r in read_trials(_study(db, linked)) if r.outcome == "complete"]
    assert len(after) == 4 and len({r.get("arch_hash") for r in after}) == 4
    assert {r.number for r in before} <= {r.number for r in after}  # what was done before the kill is kept
    assert "verdict: " in out.stdout


@pytest.mark.parametrize("args, words", [
    (["--study", "nosuch"], "no study named 'nosuch'"),
    (["--study", "parent", "--random", "-1"], "--random must be 0 or more"),
    (["--study", "parent", "--epochs", "1", "--train-images", "64"], "fidelity (1 epoch of 64 images) is not above"),
    (["--study", "parent", "--epochs", "1", "--train-images", "128", "--val-images", "64"], "is not above"),
])
def test_fidelity_mistakes_are_one_line_and_write_nothing(parent, cli, args, words):
    before = _names(parent)
    code, out, err = cli("fidelity", "--storage", parent, *args)
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert _names(parent) == before


def test_fidelity_on_a_study_with_too_few_trained(cli, tmp_path, ray_cluster):
    from nas.cli import main

    db = tmp_path / "few.db"
    assert main(["search", "--space", str(TINY), "--budget", "5M", "--trials", "2", "--sampler", "random",
                 "--storage", str(db), "--study", "few", *FAST]) == 0
    code, _, err = cli("fidelity", "--study", "few", "--storage", db)
    assert code == 2 and "has 2 completely trained candidates; a fidelity check needs at least 3" in err
    assert _names(db) == ["few"]


def test_fidelity_on_storage_it_cannot_reach(cli, tmp_path):
    code, _, err = cli("fidelity", "--study", "x", "--storage", tmp_path / "missing.db")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "missing.db").exists()
    code, _, err = cli("fidelity", "--study", "x", "--storage", "postgresql://postgres@127.0.0.1:1/test")
    assert code == 2 and "nothing answers at 127.0.0.1:1" in err


def test_the_plan_quotes_the_measured_signal_of_a_recorded_fidelity():
    from nas.search.measured_fidelity import describe, lookup

    row = lookup("resnext-cifar", 3, 2000, 1000, 64, 0.025)  # the CPU default on the recorded panel
    assert row is not None and row["seed_n"] >= 8
    assert "between two training seeds" in describe(row) and f"{row['seed_tau']:.2f}" in describe(row)
    assert lookup("resnext-cifar", 3, 2000, 1000, 64, 0.1) is None  # another learning rate: not this one
    assert lookup("resnext-cifar", 3, 2000, 500, 64, 0.025) is None  # fewer validation images: noisier
    for val in (5000, None):  # more validation images (None: all): the recorded figure holds at least
        more = lookup("resnext-cifar", 3, 2000, val, 64, 0.025)
        assert more is not None and more["tau"] == row["tau"]
        assert "on 1,000 validation images (this run validates on more" in describe(more)
    assert describe(None).startswith("not measured for this space and fidelity")
    # the reading in nas fidelity's own words: tau 0.40 over 8 (p 0.17) is noise, 0.79 ranks like the reference
    assert describe(row).startswith("ranking is noise, as measured on a resnext-cifar panel at this fidelity: ")
    assert describe(lookup("resnext-cifar", 1, 20000, 1000, 64, 0.1)).startswith("ranks like the reference, as ")


def test_the_plan_names_a_measured_fidelity_that_ranks_better():
    from nas.search.measured_fidelity import advice, describe, lookup
    from nas.study.agreement import GOOD_TAU

    default = lookup("resnext-cifar", 3, 2000, 1000, 64, 0.025)
    good = lookup("resnext-cifar", 1, 20000, 1000, 64, 0.1)
    assert default["tau"] < GOOD_TAU <= good["tau"]  # what the shipped table measured
    note = advice(default)
    assert f"--epochs 1 --train-images 20000 --lr 0.1 ranks like the reference (Kendall tau {good['tau']:.2f} " \
           f"over {good['n']}; this fidelity {default['tau']:.2f}) at 3.3x the training images" in note
    assert "--lr" not in advice(lookup("resnext-cifar", 1, 6000, 1000, 64, 0.1))  # the same lr needs no flag
    assert advice(good) is None and advice(None) is None  # ranks well already; nothing measured
    # the main job's own space: its default was measured to rank like noise, and nothing of resnest ranks
    # better (the same 1 x 20,000 at lr 0.1 is noise there), so the plan says so and recommends nothing
    main_job = lookup("resnest", 3, 2000, 1000, 64, 0.025)
    assert describe(main_job).startswith("ranking is noise, as measured on a resnest panel at this fidelity")
    assert advice(main_job) is None

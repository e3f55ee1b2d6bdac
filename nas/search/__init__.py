"""The search: options and plan (:mod:`options`), the run (:mod:`run`), the Tune searcher that
proposes and records trials (:mod:`searcher`), progress (:mod:`progress`), the weights of front
trials (:mod:`weights`) and the fidelity check of a finished study (:mod:`fidelity`)."""

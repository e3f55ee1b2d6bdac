"""Early stopping: the MO-ASHA rule and its evidence gate (:mod:`rule`, no Ray or Optuna) and its
Ray Tune scheduler (:mod:`tune_scheduler`)."""

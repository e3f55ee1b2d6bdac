"""The study: the single source of truth of a search. Its schema (:mod:`records`), storage URLs and
opening (:mod:`storage`), the one-transaction writer (:mod:`writer`), creating and resuming a study
(:mod:`lifecycle`), drivers' liveness (:mod:`liveness`), what is queued to train again
(:mod:`requeue`), and every private name of Optuna the project uses (:mod:`optuna_internals`).
The dashboards and the commands read studies through this package only."""

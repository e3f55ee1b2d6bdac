"""Ray: starting or joining a cluster and running trials through Tune (:mod:`execution`), the reaper
of a killed driver's processes (:mod:`reaper`), every private name of Ray the project uses
(:mod:`ray_internals`), and the fault-injection points of the tests (:mod:`fault_points`)."""

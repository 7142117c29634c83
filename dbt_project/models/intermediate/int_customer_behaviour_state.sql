-- One row per customer: the behaviour state as of the customer's last active day.
--
-- The state is the customer's day counts summed with exponential decay (half-life
-- var('half_life_days')) since the start of the customer's current *regime*. On every active
-- day the customer's last few days (each window of var('change_windows_days')) are tested
-- against the rest of the regime: a chi-square over per-session, per-order and per-item rates,
-- the visit rate and the mean item price, at level var('change_alpha') split over the windows.
-- When a window differs, the customer's behaviour changed and the state restarts from that
-- window (the most significant one). So a steady customer's features average over months of
-- evidence, and a customer who changed is described by the new behaviour within days.
--
-- Incremental: a run folds only the customer-days built since the last run into the stored
-- state, one active day after another (macros/behaviour_fold.sql: a recursive CTE over each
-- customer's new days on DuckDB, one aggregate() over them as an array on Spark). A
-- customer whose already folded days changed (late or re-delivered data) is folded again from
-- the first day. Folding every day from scratch (a full refresh) gives the same state.

{{ config(post_hook="{{ fold_remaining_buckets() }}", **incremental_config('customer_id')) }}

-- a full build on DuckDB folds one bucket of customers per statement: this one the first, the
-- post-hook the others (macros/behaviour_buckets.sql)
{{ behaviour_state(is_incremental(), 0, 1 if is_incremental() else behaviour_fold_buckets()) }}

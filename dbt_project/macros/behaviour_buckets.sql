{#-
    A full build of int_customer_behaviour_state in several statements. DuckDB keeps the fold's
    working tables (a row per customer and day, the recursion's union) in memory, and does not
    spill them: folding every customer in one statement needs about as much memory as the
    customer-days take (~19 GiB at 100M events). Split into buckets of customers, each folded by
    its own statement, the peak is one bucket's.

    The model's select folds bucket 0; its post-hook, fold_remaining_buckets(), inserts the
    others, inside the same transaction (a failed or killed build leaves the old table). An
    incremental run folds the new days in one statement, as before: one bucket, no hook work.
    Spark folds each customer in one aggregate(), with no recursion: one bucket there.
-#}

{#- The bucket of a customer, 0 .. buckets - 1. -#}
{% macro fold_bucket(column, buckets) -%}
    hash({{ column }}) % {{ buckets }}
{%- endmacro %}

{#- How many buckets a full build uses: the customer-days to fold (a count DuckDB keeps as
    table metadata) over var('behaviour_fold_rows'). -#}
{% macro behaviour_fold_buckets() -%}
    {{ return(adapter.dispatch('behaviour_fold_buckets')()) }}
{%- endmacro %}

{% macro default__behaviour_fold_buckets() -%}
    {%- if not execute or model.resource_type == 'unit_test' -%}
        {{ return(1) }}  {#- a unit test's inputs are fixtures in CTEs: nothing to count -#}
    {%- endif -%}
    {%- set per = number_var('behaviour_fold_rows', integer=True) -%}
    {%- set days = ref('int_events_aggregated_to_customer_days') -%}
    {%- set rows = run_query('select count(*) from ' ~ days).columns[0].values()[0] -%}
    {{ return([1, ((rows + per - 1) // per) | int] | max) }}
{%- endmacro %}

{% macro spark__behaviour_fold_buckets() -%}
    {{ return(1) }}
{%- endmacro %}

{#- The post-hook: when the table holds only bucket 0's customers (a full build's first
    statement just wrote it), fold the other buckets into it, one statement each. Otherwise
    (an incremental run, or one bucket) nothing. Inserting the fold of customers that have no
    row is correct whenever it runs: a customer without a state is folded from the start. -#}
{% macro fold_remaining_buckets() -%}
    {%- set buckets = behaviour_fold_buckets() -%}
    {%- if buckets > 1 -%}
        {%- set others = run_query(
            'select count(*) from (select 1 from ' ~ this ~ ' where '
            ~ fold_bucket('customer_id', buckets) ~ ' <> 0 limit 1)'
        ).columns[0].values()[0] -%}
        {%- if others == 0 -%}
            {%- for bucket in range(1, buckets) %}
insert into {{ this }} {{ behaviour_state(false, bucket, buckets) }};
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

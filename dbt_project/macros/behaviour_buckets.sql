{#-
    A full build of int_customer_behaviour_state in several statements. DuckDB keeps the fold's
    working tables (a row per customer and day, the recursion's union) in memory, and does not
    spill them: folding every customer in one statement needs about as much memory as the
    customer-days take (~19 GiB at 100M events). Split into buckets of customers, each folded by
    its own statement, the peak is one bucket's.

    The model's select folds bucket 0; its post-hook, fold_remaining_buckets(), inserts the
    others inside the same transaction (a failed or killed build leaves the old table). An
    incremental run folds the new days in one statement, as before; its hook only looks (the
    count of customer-days, from metadata, and two exists() probes) and does nothing. Spark folds each customer in one aggregate(),
    with no recursion: one bucket there, and the hook renders nothing.
-#}

{#- The bucket of a customer, 0 .. buckets - 1. -#}
{% macro fold_bucket(column, buckets) -%}
    hash({{ column }}) % {{ buckets }}
{%- endmacro %}

{#- How many buckets a full build uses: the customer-days to fold (a count DuckDB keeps as table
    metadata) over the bucket size, which is var('behaviour_fold_rows') or one customer-day per
    4 KiB of DuckDB's memory limit, whichever is smaller (a bucket of 1M customer-days took
    1.8 GiB of the process at 10M events: 4 KiB leaves room for the rest of the statement). -#}
{% macro behaviour_fold_buckets() -%}
    {{ return(adapter.dispatch('behaviour_fold_buckets')()) }}
{%- endmacro %}

{% macro default__behaviour_fold_buckets() -%}
    {%- if not execute or model.resource_type == 'unit_test' -%}
        {{ return(1) }}  {#- a unit test's inputs are fixtures in CTEs: nothing to count -#}
    {%- endif -%}
    {%- set days = load_relation(ref('int_events_aggregated_to_customer_days')) -%}
    {%- if days is none -%}
        {{ return(1) }}  {#- compiled before the day aggregates exist: nothing to fold yet -#}
    {%- endif -%}
    {%- set sizes = run_query(
        "select count(*), "
        ~ "(select cast(regexp_extract(v, '^[0-9.]+') as double) * case regexp_extract(v, '[A-Za-z]+$')"
        ~ " when 'KiB' then 1024 when 'MiB' then 1048576 when 'GiB' then 1073741824"
        ~ " when 'TiB' then 1099511627776 else 1 end"
        ~ " from (select current_setting('memory_limit') as v))"
        ~ " from " ~ days
    ).rows[0] -%}
    {%- set rows, limit_bytes = sizes[0], sizes[1] -%}
    {%- set per = number_var('behaviour_fold_rows', integer=True) -%}
    {%- if limit_bytes -%}
        {%- set per = [per, [1000, (limit_bytes / 4096) | int] | max] | min -%}
    {%- endif -%}
    {{ return([1, ((rows + per - 1) // per) | int] | max) }}
{%- endmacro %}

{% macro spark__behaviour_fold_buckets() -%}
    {{ return(1) }}
{%- endmacro %}

{#- The post-hook: when the table holds no customer outside bucket 0 (a full build's first
    statement just wrote it), fold the other buckets into it, one statement each; when it
    holds no row at all, bucket 0 too. Otherwise (an incremental run, or one bucket) nothing.
    Inserting the fold of customers that have no row is correct whenever it runs: a customer
    without a state is folded from the start. -#}
{% macro fold_remaining_buckets() -%}
    {%- set buckets = behaviour_fold_buckets() -%}
    {%- if buckets > 1 -%}
        {%- set held = run_query(
            'select exists (select 1 from ' ~ this ~ '), exists (select 1 from ' ~ this
            ~ ' where ' ~ fold_bucket('customer_id', buckets) ~ ' <> 0)'
        ).rows[0] -%}
        {%- if not held[1] -%}
            {%- for bucket in range(1 if held[0] else 0, buckets) %}
insert into {{ this }} {{ behaviour_state(false, bucket, buckets) }};
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#-
    The few constructs DuckDB and Spark SQL spell differently, one macro each, dispatched on the
    adapter (duckdb__ keeps the SQL the project always ran on DuckDB; spark__ is dbt-spark's).
    Everything else in the models is SQL both engines read the same way: count(*) filter (...),
    qualify, * except (...), bool_or, any_value, min_by, date - integer, with recursive.
    dbt's own datediff is not used: dbt-spark's asserts its dates are not null, and the
    behaviour state takes the distance to a null date on purpose (it becomes a factor of 0).
-#}

{#- Whole days from `start` to `end` (dates), as bigint; null when either is null. -#}
{% macro days_between(start, end) -%}
    {{ return(adapter.dispatch('days_between')(start, end)) }}
{%- endmacro %}

{% macro default__days_between(start, end) -%}
    date_diff('day', {{ start }}, {{ end }})
{%- endmacro %}

{% macro spark__days_between(start, end) -%}
    cast(datediff({{ end }}, {{ start }}) as bigint)
{%- endmacro %}

{#- An interval of `minutes` minutes (a number, checked by the caller). -#}
{% macro minutes_interval(minutes) -%}
    {{ return(adapter.dispatch('minutes_interval')(minutes)) }}
{%- endmacro %}

{% macro default__minutes_interval(minutes) -%}
    interval ({{ minutes }}) minute
{%- endmacro %}

{% macro spark__minutes_interval(minutes) -%}
    make_dt_interval(0, 0, 0, {{ minutes }} * 60)
{%- endmacro %}

{#- The earliest value of `type` ('date' or 'timestamp'): the bound below every real one. -#}
{% macro earliest(type) -%}
    {{ return(adapter.dispatch('earliest')(type)) }}
{%- endmacro %}

{% macro default__earliest(type) -%}
    '-infinity'::{{ type }}
{%- endmacro %}

{% macro spark__earliest(type) -%}
    cast('0001-01-01' as {{ type }})
{%- endmacro %}

{#- Fails the query with `message` (a SQL string expression) when evaluated. -#}
{% macro raise_sql_error(message) -%}
    {{ return(adapter.dispatch('raise_sql_error')(message)) }}
{%- endmacro %}

{% macro default__raise_sql_error(message) -%}
    error({{ message }})
{%- endmacro %}

{% macro spark__raise_sql_error(message) -%}
    raise_error({{ message }})
{%- endmacro %}

{#- The `value` of the row with the smallest (keys...), compared left to right. -#}
{% macro min_by_keys(value, keys) -%}
    {{ return(adapter.dispatch('min_by_keys')(value, keys)) }}
{%- endmacro %}

{% macro default__min_by_keys(value, keys) -%}
    arg_min({{ value }}, ({{ keys | join(', ') }}))
{%- endmacro %}

{% macro spark__min_by_keys(value, keys) -%}
    min_by({{ value }}, struct({{ keys | join(', ') }}))
{%- endmacro %}

{#- `materialized` for a CTE the engine should compute once (DuckDB's hint; Spark has none). -#}
{% macro materialized_cte() -%}
    {{ return(adapter.dispatch('materialized_cte')()) }}
{%- endmacro %}

{% macro default__materialized_cte() -%}
    materialized
{%- endmacro %}

{% macro spark__materialized_cte() -%}
{%- endmacro %}

{#- `not materialized` for a CTE the engine should inline into each use (DuckDB's hint; Spark
    inlines anyway). DuckDB materialises a CTE used twice: the day aggregates' `events`, read
    once for the dates to build and once for their rows, would be every staged event (101.8M
    rows, 16 s of thread time at 100M events) to rebuild one day. -#}
{% macro inlined_cte() -%}
    {{ return(adapter.dispatch('inlined_cte')()) }}
{%- endmacro %}

{% macro default__inlined_cte() -%}
    not materialized
{%- endmacro %}

{% macro spark__inlined_cte() -%}
{%- endmacro %}

{#- A number as a double literal expression: Spark reads 0.0001 as a decimal, and decimal
    division rounds to a fixed scale; DuckDB divides decimals as doubles anyway. -#}
{% macro double(number) -%}
    cast({{ number }} as double)
{%- endmacro %}

{#- How a model kept incrementally by `unique_key` is configured on this engine (pass to
    config(**...)). DuckDB: delete+insert by the key (whole dates, or whole customers).
    Spark with Parquet tables has no delete and no merge (merge needs Delta, Iceberg or Hudi):
    the day aggregates are partitioned by date and their rebuilt dates overwrite their
    partitions (dynamic insert_overwrite: the same as delete+insert by date); the per-customer
    states are rebuilt as tables on every run (the same rows as a fold of only the new days). -#}
{% macro incremental_config(unique_key) -%}
    {{ return(adapter.dispatch('incremental_config')(unique_key)) }}
{%- endmacro %}

{% macro default__incremental_config(unique_key) -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'delete+insert',
        'unique_key': unique_key,
        'on_schema_change': 'fail',
    }) }}
{%- endmacro %}

{% macro spark__incremental_config(unique_key) -%}
    {%- if unique_key == 'event_date' -%}
        {{ return({
            'materialized': 'incremental',
            'incremental_strategy': 'insert_overwrite',
            'partition_by': ['event_date'],
            'on_schema_change': 'fail',
        }) }}
    {%- else -%}
        {{ return({'materialized': 'table'}) }}
    {%- endif -%}
{%- endmacro %}

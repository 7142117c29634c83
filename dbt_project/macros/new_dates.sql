{#-
    Incremental day aggregates rebuild whole dates: the dates of staged events loaded since the
    rows this model already holds were built (raw rows carry _loaded_at), and every date after
    the latest one it holds (an earlier run as of a past snapshot_date left them out). A
    re-delivered file therefore rebuilds the dates it touches; a full refresh rebuilds every
    date.
-#}
{% macro dates_to_build(events) -%}
    {%- if is_incremental() %}
    select distinct event_date
    from {{ events }}
    where (
            _loaded_at > (select coalesce(max(_source_loaded_at), {{ earliest('timestamp') }}) from {{ this }})
            or event_date > (select coalesce(max(event_date), {{ earliest('date') }}) from {{ this }})
        )
      and event_date <= {{ snapshot_date() }}
    {%- else %}
    select distinct event_date
    from {{ events }}
    where event_date <= {{ snapshot_date() }}
    {%- endif %}
{%- endmacro %}

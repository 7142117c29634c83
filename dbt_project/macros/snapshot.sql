{#- The snapshot date the features are computed as of: var('snapshot_date') (an ISO date,
    YYYY-MM-DD) or the latest event date. -#}
{% macro snapshot_date() -%}
  {%- set value = var('snapshot_date') -%}
  {%- if value -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value | string) -%}
      {{ exceptions.raise_compiler_error(
          "var 'snapshot_date' must be a date as YYYY-MM-DD, got " ~ (value | string)[:50]) }}
    {%- endif -%}
    date '{{ value }}'
  {%- else -%}
    (select max(cast(event_ts as date)) from {{ ref('stg_shop__events') }})
  {%- endif -%}
{%- endmacro %}

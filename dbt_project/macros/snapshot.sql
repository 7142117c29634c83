{#- The snapshot date the features are computed as of: var('snapshot_date') or the latest event date. -#}
{% macro snapshot_date() -%}
  {%- if var('snapshot_date') -%}
    date '{{ var("snapshot_date") }}'
  {%- else -%}
    (select max(cast(event_ts as date)) from {{ ref('stg_shop__events') }})
  {%- endif -%}
{%- endmacro %}

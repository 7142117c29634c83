-- A view: a projection of raw.events, no copy. Ingestion already guarantees one row per
-- event_id (a duplicate in a file or across files is quarantined, a re-delivered file
-- replaces its own rows) and the unique test in _shop__models.yml re-checks that on every
-- build, so there is no dedup window to materialise. As a deduplicating table this model
-- cost 15.7 s of a 32 s dbt build on 10M events, and a full rewrite on every daily refresh.
{{ config(materialized='view') }}

with

source as (

    select * from {{ source('shop', 'events') }}

),

renamed as (

    select
        event_id,
        customer_id,
        session_id,
        event_ts,
        cast(event_ts as date) as event_date,
        lower(trim(event_type)) as event_type,
        product_id,
        lower(trim(category)) as category,
        price,
        discount,
        quantity,
        search_query,
        review_rating,
        review_text,
        _loaded_at

    from source

)

select * from renamed

with

source as (

    select * from {{ source('shop', 'products') }}

),

latest as (

    select *
    from source
    qualify row_number() over (partition by product_id order by _loaded_at desc, _source_file desc) = 1

),

renamed as (

    select
        product_id,
        lower(trim(category)) as category,
        base_price

    from latest

)

select * from renamed

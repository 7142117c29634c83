with

source as (

    select * from {{ source('shop', 'customers') }}

),

latest as (

    select *
    from source
    qualify row_number() over (partition by customer_id order by _loaded_at desc, _source_file desc) = 1

),

renamed as (

    select
        customer_id,
        signup_ts,
        country

    from latest

)

select * from renamed

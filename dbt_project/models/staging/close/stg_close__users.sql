-- Close users, one row per user id (latest load wins if the table holds several).
with users_source as (

    select * from {{ source('close', 'users') }}

),

renamed as (

    select
        id as user_id,
        nullif(trim(concat_ws(' ', first_name, last_name)), '') as user_name,
        first_name,
        last_name,
        email,
        image as image_url,
        date_created as created_at,
        date_updated as updated_at,
        _loaded_at as loaded_at

    from users_source
    qualify row_number() over (partition by id order by _loaded_at desc, date_updated desc nulls last) = 1

)

select * from renamed

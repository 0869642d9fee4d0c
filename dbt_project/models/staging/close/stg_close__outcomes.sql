-- Current Close call outcomes, one row per outcome id (latest load wins if the table holds several).
with outcomes_source as (

    select * from {{ source('close', 'outcomes') }}

),

renamed as (

    select
        id as outcome_id,
        organization_id,
        name as outcome_name,
        description as outcome_description,
        type as outcome_type,
        applies_to,
        date_created as created_at,
        date_updated as updated_at,
        created_by as created_by_user_id,
        updated_by as updated_by_user_id,
        _loaded_at as loaded_at

    from outcomes_source
    qualify row_number() over (partition by id order by _loaded_at desc, date_updated desc nulls last) = 1

)

select * from renamed

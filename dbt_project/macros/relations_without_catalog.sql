{#-
    References without the catalog name. A view keeps the SQL it was created with, and DuckDB
    binds a name like "close_calls"."staging"."x" to the database attached under that name. The
    read-only copy is opened under another name (close_calls_readonly), and a reader may attach
    the warehouse or the lake under any name: a view whose references name no catalog reads from
    the database it lives in, whatever that is called. dbt's unit tests pass their fixtures as
    names: those are kept.
-#}
{% macro ref() %}
    {% do return(relation_without_catalog(builtins.ref(*varargs, **kwargs))) %}
{% endmacro %}

{% macro source() %}
    {% do return(relation_without_catalog(builtins.source(*varargs, **kwargs))) %}
{% endmacro %}

{% macro relation_without_catalog(relation) %}
    {% do return(relation.include(database=false) if relation.include is defined else relation) %}
{% endmacro %}

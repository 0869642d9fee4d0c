{#-
    References without the catalog name. A view keeps the SQL it was created with, and DuckDB
    binds a name like "close_calls"."staging"."x" to the database attached under that name. The
    read-only copy is opened under another name (close_calls_readonly), and a reader may attach
    the warehouse or the lake under any name: a view whose references name no catalog reads from
    the database it lives in, whatever that is called.
-#}
{% macro ref() %}
    {% do return(builtins.ref(*varargs, **kwargs).include(database=false)) %}
{% endmacro %}

{% macro source() %}
    {% do return(builtins.source(*varargs, **kwargs).include(database=false)) %}
{% endmacro %}

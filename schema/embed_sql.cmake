# Writes OUT: a C file defining qf_schema_migrations[] from the .sql FILES
# (sorted; file N is the migration to user_version N+1).
set(body "/* generated from schema/NNN_name.sql by schema/embed_sql.cmake */\n#include <stddef.h>\nconst char *const qf_schema_migrations[] = {\n")
set(n 0)
foreach(f ${FILES})
  file(READ ${f} sql)
  string(REPLACE "\\" "\\\\" sql "${sql}")
  string(REPLACE "\"" "\\\"" sql "${sql}")
  string(REPLACE "\n" "\\n\"\n\"" sql "${sql}")
  string(APPEND body "\"${sql}\",\n")
  math(EXPR n "${n}+1")
endforeach()
string(APPEND body "NULL };\nconst int qf_schema_version = ${n};\n")
file(WRITE ${OUT} "${body}")

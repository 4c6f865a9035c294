/* json.h — small shared helpers over cJSON (library-private). */
#ifndef KILN_CORE_JSON_H
#define KILN_CORE_JSON_H

#include <cjson/cJSON.h>

/* "a number", "a string", "a list", "an object", "a boolean", "null": for error messages. */
const char *kiln_json_type(const cJSON *v);

#endif

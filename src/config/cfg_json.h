/* cfg_json.h — config trees as JSON and back, and exact JSON numbers (library-private).
 *
 * model.json stores the part of a run's config that defines the graph as JSON with the same
 * keys, so that a person reads it as the YAML they wrote and the loader rebuilds the graph
 * from it with kiln_model_build.
 *
 * To JSON: maps become objects (keys in order), sequences arrays, and scalars take their YAML
 * type: a plain empty scalar (null, ~) is null, a plain true/false a boolean, a plain number a
 * number (the shortest decimal that reads back as the same double), anything else a string.
 * Names are always strings, whatever they look like (the values of "name", "from" and
 * "class_names"), so a layer called 007 keeps its name and its parameters' names.
 * From JSON: objects become maps (a duplicate key is an error), arrays sequences, strings
 * quoted scalars (always strings, as in YAML), numbers plain scalars ("%lld" for integers up to
 * 2^53, else the shortest exact decimal), booleans true/false and null a plain empty scalar.
 * So to-JSON-and-back gives a tree that every kiln_cfg_* reader reads as the original.
 */
#ifndef KILN_IO_CFG_JSON_H
#define KILN_IO_CFG_JSON_H

#include <cjson/cJSON.h>

#include "kiln/config.h"

/* c as JSON, or NULL when out of memory. */
cJSON *kiln_cfg_to_json(const kiln_cfg *c);
/* j as a config node with map key `key` (NULL for none). Every node gets file as its position
 * (JSON carries no lines), so file must outlive the tree. */
kiln_status kiln_cfg_from_json(const cJSON *j, const char *file, const char *key, kiln_cfg **out);

/* v as a JSON number with the fewest significant digits that read back exactly: as a double,
 * or, when as_float, as the float v (0.003921569 rather than 0.0039215688593685627). v must be
 * finite. NULL when out of memory. */
cJSON *kiln_json_number(double v, int as_float);

#endif

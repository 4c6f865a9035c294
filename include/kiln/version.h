/* kiln/version.h — kiln's version, written into run.json, model.json and server metadata. */
#ifndef KILN_VERSION_H
#define KILN_VERSION_H

#define KILN_VERSION "0.1.0"

#endif

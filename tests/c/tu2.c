/* A second translation unit that includes gateway.h: the header must link twice. */
#include "gateway.h"

#include "tu2.h"

const char *tu2_result_name(gw_result result) { return gw_result_name(result); }

#ifndef TU2_H
#define TU2_H
#include "gateway.h"
const char *tu2_result_name(gw_result result);
#endif

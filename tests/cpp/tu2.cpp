// A second translation unit that includes gateway.hpp: the header-only wrapper must link twice.
#include "gateway.hpp"

std::string tu2_error_name(gateway::Code code) { return gateway::Error(code, "").name(); }

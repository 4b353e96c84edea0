#include "experts/model/model.hpp"
#include "experts/base/error.hpp"

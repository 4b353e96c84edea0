#pragma once
#include "experts/train/classifier_task.hpp"
#include "experts/nn/router.hpp"
#include <vector>

#pragma once
// Catch2 v2 (Debian 12) and v3 (Ubuntu 24.04 on the GPU machine) spell their headers differently.
#ifdef MENTOR_CATCH3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

// The Catch2 main for Debian 12's Catch2 v2; with Catch2 v3 the library provides main.
#ifndef MENTOR_CATCH3
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif

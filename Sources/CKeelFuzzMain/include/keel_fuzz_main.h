/* The fuzz targets' main (see replay.c). */
#pragma once
int keel_fuzz_main(int argc, char **argv);

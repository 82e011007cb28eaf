# ccache as the compiler launcher, and precompiled headers that keep its hits.
#
# Where the cache lives (CCACHE_DIR, CCACHE_BASEDIR, CCACHE_MAXSIZE) is
# defined once, in scripts/cache-env.sh; the Makefile and the scripts pass it
# on through the environment.
#
#   caffe_xent_precompile_headers(<target> <header>...)

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  # ccache with precompiled headers needs this sloppiness (ccache manual,
  # "Precompiled headers") and -fpch-preprocess (caffe_xent_precompile_headers).
  set(CMAKE_CXX_COMPILER_LAUNCHER "${CMAKE_COMMAND};-E;env;CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime;${CCACHE_PROGRAM}")
  set(CMAKE_CUDA_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
endif()

# A precompiled header for the C++ sources of <target>, compiled so that
# ccache can cache the objects that use it.
function(caffe_xent_precompile_headers target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fpch-preprocess>)
  target_precompile_headers(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${ARGN}>")
endfunction()

# Upstream Caffe with our files laid over it.
#
# Overlay rule: a file of ours at the same path as an upstream file replaces
# it: sources by exclusion from the glob (caffe_xent_overlay_sources), headers
# by include order (our include/ before upstream's, set on libcaffe) with a
# marker line in the shadowed upstream copy (below). CAFFE_XENT_PRISTINE
# keeps upstream as it is: only the toolchain patches, none of our files.
#
# Sets UP, the patched upstream tree (<build>/caffe-upstream), and defines
#   caffe_xent_overlay_sources(<out> <glob relative to the tree root>...)

include(${CMAKE_CURRENT_LIST_DIR}/Upstream.cmake)
file(GLOB toolchain_patches "${PROJECT_SOURCE_DIR}/patches/0*.patch")
file(GLOB feature_patches "${PROJECT_SOURCE_DIR}/patches/1*.patch")
list(SORT toolchain_patches)
list(SORT feature_patches)
set(UP "${CMAKE_BINARY_DIR}/caffe-upstream")
if(CAFFE_XENT_PRISTINE)
  caffe_xent_prepare_upstream("${UP}" ${toolchain_patches})
else()
  caffe_xent_prepare_upstream("${UP}" ${toolchain_patches} ${feature_patches})
endif()

# Our headers shadow upstream's of the same path (include order). Objects
# compiled before a shadowing header appeared still name the upstream copy
# in ninja's dependency log and in ccache's manifests (ccache's direct mode
# checks the recorded headers' contents, not the include path). So the
# upstream copy of each shadowed header gets a marker line: its content and
# mtime change, and exactly its dependents recompile.
if(NOT CAFFE_XENT_PRISTINE)
  file(GLOB_RECURSE our_headers RELATIVE "${PROJECT_SOURCE_DIR}/include" CONFIGURE_DEPENDS
       "${PROJECT_SOURCE_DIR}/include/*.hpp" "${PROJECT_SOURCE_DIR}/include/*.h")
  foreach(h IN LISTS our_headers)
    if(EXISTS "${UP}/include/${h}")
      file(READ "${UP}/include/${h}" upstream_header)
      string(FIND "${upstream_header}" "caffe-xent: shadowed by" marked)
      if(marked EQUAL -1)
        file(APPEND "${UP}/include/${h}" "\n// caffe-xent: shadowed by include/${h}\n")
      endif()
    endif()
  endforeach()
endif()

# Sources: upstream's by glob, ours replacing same-named ones. A layer is
# replaced whole: when we have src/.../X.cpp or X.cu, upstream's X.cpp and
# X.cu (same folder, same stem) are both left out.
file(GLOB_RECURSE our_sources RELATIVE "${PROJECT_SOURCE_DIR}" CONFIGURE_DEPENDS
     "${PROJECT_SOURCE_DIR}/src/*.cpp" "${PROJECT_SOURCE_DIR}/src/*.cu"
     "${PROJECT_SOURCE_DIR}/tools/*.cpp" "${PROJECT_SOURCE_DIR}/python/caffe/*.cpp")
set(our_stems "")
foreach(f IN LISTS our_sources)
  string(REGEX REPLACE "\\.(cpp|cu)$" "" stem "${f}")
  list(APPEND our_stems "${stem}")
endforeach()

function(caffe_xent_overlay_sources out)
  set(result "")
  foreach(pattern IN LISTS ARGN)
    file(GLOB upstream RELATIVE "${UP}" "${UP}/${pattern}")
    set(ours "")
    if(NOT CAFFE_XENT_PRISTINE)
      file(GLOB ours RELATIVE "${PROJECT_SOURCE_DIR}" CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/${pattern}")
    endif()
    foreach(f IN LISTS upstream)
      string(REGEX REPLACE "\\.(cpp|cu)$" "" stem "${f}")
      if(CAFFE_XENT_PRISTINE OR NOT stem IN_LIST our_stems)
        list(APPEND result "${UP}/${f}")
      endif()
    endforeach()
    foreach(f IN LISTS ours)
      list(APPEND result "${PROJECT_SOURCE_DIR}/${f}")
    endforeach()
  endforeach()
  set(${out} ${result} PARENT_SCOPE)
endfunction()

# Fetch, verify, unpack and patch upstream Caffe (Debian's source package)
# into a folder of the build tree at configure time (cmake/Overlay.cmake).
#
# The tree is rebuilt only when the patch set changes (a stamp records the
# SHA-256 of every patch applied), so incremental builds stay incremental.
#
#   caffe_xent_prepare_upstream(<dest> <patch>...)

function(caffe_xent_prepare_upstream dest)
  set(patches ${ARGN})
  execute_process(
    COMMAND bash "${PROJECT_SOURCE_DIR}/scripts/fetch-upstream.sh"
    OUTPUT_VARIABLE download_dir
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "fetching upstream Caffe failed (see above)")
  endif()

  set(stamp_text "upstream=${download_dir}\n")
  foreach(patch IN LISTS patches)
    file(SHA256 "${patch}" sum)
    string(APPEND stamp_text "${patch}=${sum}\n")
  endforeach()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${patches})

  set(stamp "${dest}/.caffe-xent-stamp")
  set(old_stamp "")
  if(EXISTS "${stamp}")
    file(READ "${stamp}" old_stamp)
  endif()
  if(NOT old_stamp STREQUAL stamp_text)
    message(STATUS "Preparing upstream Caffe in ${dest}")
    execute_process(
      COMMAND bash "${PROJECT_SOURCE_DIR}/scripts/prepare-upstream.sh"
              "${download_dir}" "${dest}" ${patches}
      RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "unpacking or patching upstream Caffe failed (see above)")
    endif()
    file(WRITE "${stamp}" "${stamp_text}")
  endif()
endfunction()

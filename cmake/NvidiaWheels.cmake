# cuBLAS, cuRAND and CCCL from NVIDIA's PyPI wheels (nvidia-cublas,
# nvidia-curand, nvidia-cuda-cccl), for CUDA toolkits installed without them.
#
# The wheels unpack to <site-packages>/nvidia/cu13/{include,lib}. We look in
# the site-packages of the Python that builds us, so `pip install` of the
# wheels into the same environment is all a user does. Defines:
#   CaffeXent::cublas, CaffeXent::curand  imported shared libraries
#   CAFFE_XENT_CCCL_INCLUDE_DIR           CCCL headers, searched before the toolkit's
#   CAFFE_XENT_NVIDIA_LIB_DIR             for the run-time search path

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import sys, os; print(next((os.path.join(p, 'nvidia', 'cu13') for p in sys.path if os.path.isdir(os.path.join(p, 'nvidia', 'cu13'))), ''))"
  OUTPUT_VARIABLE _nvidia_root OUTPUT_STRIP_TRAILING_WHITESPACE)

function(_caffe_xent_wheel_library target lib header wheel)
  find_library(_lib_${lib} NAMES ${lib} lib${lib}.so.13 lib${lib}.so.10
               HINTS "${_nvidia_root}/lib" "${CUDAToolkit_LIBRARY_DIR}" NO_DEFAULT_PATH)
  find_path(_inc_${lib} ${header} HINTS "${_nvidia_root}/include" "${CUDAToolkit_INCLUDE_DIRS}" NO_DEFAULT_PATH)
  if(NOT _lib_${lib} OR NOT _inc_${lib})
    message(FATAL_ERROR "${lib} not found: install the PyPI wheel ${wheel} into the building "
                        "Python (${Python_EXECUTABLE}) or use a toolkit that has it")
  endif()
  add_library(${target} SHARED IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES IMPORTED_LOCATION "${_lib_${lib}}"
                        INTERFACE_INCLUDE_DIRECTORIES "${_inc_${lib}}")
  message(STATUS "${lib}: ${_lib_${lib}}")
endfunction()

_caffe_xent_wheel_library(CaffeXent::cublas cublas cublas_v2.h nvidia-cublas)
_caffe_xent_wheel_library(CaffeXent::curand curand curand.h nvidia-curand)

find_path(CAFFE_XENT_CCCL_INCLUDE_DIR cuda/std/version
          HINTS "${_nvidia_root}/include/cccl" NO_DEFAULT_PATH)
if(NOT CAFFE_XENT_CCCL_INCLUDE_DIR)
  message(FATAL_ERROR "CCCL headers not found: install the PyPI wheel nvidia-cuda-cccl "
                      "into the building Python (${Python_EXECUTABLE})")
endif()
set(CAFFE_XENT_NVIDIA_LIB_DIR "${_nvidia_root}/lib")

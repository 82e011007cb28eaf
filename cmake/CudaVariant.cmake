# The CUDA variant. CAFFE_XENT_CUDA (AUTO: when nvcc is found; ON; OFF)
# decides CAFFE_XENT_USE_CUDA. When on: CUDA as a language, sm_80 and sm_90
# machine code plus sm_90 PTX for newer GPUs, the toolkit, and cuBLAS,
# cuRAND and CCCL from NVIDIA's wheels (cmake/NvidiaWheels.cmake).
# Needs Python (the wheels are found in the building Python's site-packages).

if(CAFFE_XENT_CUDA STREQUAL "AUTO")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CAFFE_XENT_USE_CUDA ON)
  else()
    set(CAFFE_XENT_USE_CUDA OFF)
  endif()
else()
  set(CAFFE_XENT_USE_CUDA ${CAFFE_XENT_CUDA})
endif()
if(CAFFE_XENT_USE_CUDA)
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80-real 90)
  endif()
  set(CMAKE_CUDA_STANDARD 17)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  include(${CMAKE_CURRENT_LIST_DIR}/NvidiaWheels.cmake)
endif()
message(STATUS "caffe-xent: CUDA ${CAFFE_XENT_USE_CUDA}, pristine ${CAFFE_XENT_PRISTINE}")

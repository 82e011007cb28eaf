# The two Python packages the wheel installs (wheel root = site-packages):
#   caffe/        pycaffe: upstream's Python package, _caffe, caffe_pb2
#   caffe_xent/   ours: the Python modules and the pybind11 harness
# plus, unless pristine, the top-level `loss_layers` compatibility shim.
# Needs libcaffe (target caffe) and the generated caffe_pb2.py (proto_out).

# ---- pycaffe ----------------------------------------------------------------
caffe_xent_overlay_sources(pycaffe_src python/caffe/_caffe.cpp)
add_library(pycaffe MODULE ${pycaffe_src})
set_target_properties(pycaffe PROPERTIES PREFIX "" OUTPUT_NAME _caffe
  INSTALL_RPATH "$ORIGIN/../caffe_xent/lib")
target_link_libraries(pycaffe PRIVATE caffe Python::Module)
install(TARGETS pycaffe LIBRARY DESTINATION caffe)
install(DIRECTORY "${UP}/python/caffe/" DESTINATION caffe
        FILES_MATCHING PATTERN "*.py" PATTERN "test" EXCLUDE PATTERN "imagenet" EXCLUDE)
install(FILES "${proto_out}/caffe/proto/caffe_pb2.py" DESTINATION caffe/proto)
file(WRITE "${CMAKE_BINARY_DIR}/proto_init.py" "")
install(FILES "${CMAKE_BINARY_DIR}/proto_init.py" DESTINATION caffe/proto RENAME __init__.py)

# ---- our Python package and the pybind11 harness ----------------------------
# Also built in the pristine variant, so benchmarks run upstream's layers
# through the same harness (its helper sources are compiled in there).
if(NOT pybind11_DIR)  # outside scikit-build-core: ask the building Python
  execute_process(COMMAND "${Python_EXECUTABLE}" -m pybind11 --cmakedir
                  OUTPUT_VARIABLE pybind11_DIR OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
find_package(pybind11 CONFIG REQUIRED)
# The harness: every C++ file of python/caffe_xent/.
file(GLOB harness_srcs CONFIGURE_DEPENDS python/caffe_xent/*.cpp)
if(CAFFE_XENT_PRISTINE)
  list(APPEND harness_srcs src/caffe/util/xent_device.cpp src/caffe/util/xent_registry.cpp
       src/caffe/util/xent_simd.cpp)
  # Compiled into the module here (not libcaffe): at pybind11's hidden
  # visibility it would instantiate its own, empty copy of the header-inline
  # layer registry. At default visibility that static is a GNU-unique
  # symbol, merged with the one libcaffe fills.
  set_source_files_properties(src/caffe/util/xent_registry.cpp PROPERTIES
                              COMPILE_OPTIONS "-fvisibility=default;-fno-visibility-inlines-hidden")
endif()
pybind11_add_module(_harness MODULE ${harness_srcs})
target_include_directories(_harness PRIVATE "${PROJECT_SOURCE_DIR}/include")
target_link_libraries(_harness PRIVATE caffe)
if(CAFFE_XENT_PRISTINE)
  target_link_libraries(_harness PRIVATE PkgConfig::HWY)
endif()
if(CAFFE_XENT_USE_CUDA AND CAFFE_XENT_PRISTINE)
  target_link_libraries(_harness PRIVATE CUDA::cudart_static)
endif()
set_target_properties(_harness PROPERTIES INSTALL_RPATH "$ORIGIN/lib")
install(TARGETS _harness LIBRARY DESTINATION caffe_xent)
install(DIRECTORY python/caffe_xent/ DESTINATION caffe_xent
        FILES_MATCHING PATTERN "*.py" PATTERN "*.pyi" PATTERN "py.typed" PATTERN "__pycache__" EXCLUDE)
if(NOT CAFFE_XENT_PRISTINE)
  # Prototxts written for the original Python layers name `module: 'loss_layers'`, a top-level module:
  # install the compatibility shim there so they run unchanged (a user's own
  # loss_layers.py earlier on the path still wins).
  install(FILES python/caffe_xent/compat/loss_layers.py DESTINATION .)
endif()

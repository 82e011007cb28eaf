# The C++ tests: upstream's gtest, upstream's loss/net/solver tests, ours
# (tests/cpp/test_*.cpp), in one binary, caffe_xent_cpp_tests (CAFFE_XENT_TESTS).

# caffe_config.h (always written: libcaffe's include path names its folder):
# where upstream's tests find their data. The test data directory is relative
# to the source root, where the test binary runs (make cpp-test; the GPU
# bundle carries the same files under its own root), since the solver data
# list inside it names its files relative to that root too.
file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/config")
file(WRITE "${CMAKE_BINARY_DIR}/config/caffe_config.h.tmp"
  "#define SOURCE_FOLDER \"${UP}\"\n"
  "#define BINARY_FOLDER \"${CMAKE_BINARY_DIR}\"\n"
  "#define ABS_TEST_DATA_DIR \"src/caffe/test/test_data/\"\n"
  "#define CUDA_TEST_DEVICE -1\n")
configure_file("${CMAKE_BINARY_DIR}/config/caffe_config.h.tmp" "${CMAKE_BINARY_DIR}/config/caffe_config.h" COPYONLY)

if(NOT CAFFE_XENT_TESTS)
  return()
endif()
set(upstream_tests
  test_sigmoid_cross_entropy_loss_layer test_softmax_with_loss_layer
  test_euclidean_loss_layer test_hinge_loss_layer test_infogain_loss_layer
  test_multinomial_logistic_loss_layer test_contrastive_loss_layer
  test_net test_solver test_solver_factory test_gradient_based_solver)
set(test_srcs "${UP}/src/gtest/gtest-all.cpp")
caffe_xent_overlay_sources(main_src src/caffe/test/test_caffe_main.cpp)
list(APPEND test_srcs ${main_src})
foreach(t IN LISTS upstream_tests)
  list(APPEND test_srcs "${UP}/src/caffe/test/${t}.cpp")
endforeach()
if(NOT CAFFE_XENT_PRISTINE)
  file(GLOB our_tests CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/tests/cpp/test_*.cpp")
  list(APPEND test_srcs ${our_tests})
endif()
add_executable(caffe_xent_cpp_tests ${test_srcs})
target_include_directories(caffe_xent_cpp_tests PRIVATE "${UP}/src")
target_compile_definitions(caffe_xent_cpp_tests PRIVATE GTEST_USE_OWN_TR1_TUPLE=0)
target_compile_options(caffe_xent_cpp_tests PRIVATE -Wno-deprecated-declarations)
target_link_libraries(caffe_xent_cpp_tests PRIVATE caffe Python::Python OpenMP::OpenMP_CXX)
set_target_properties(caffe_xent_cpp_tests PROPERTIES BUILD_RPATH "${Python_LIBRARY_DIRS};${CAFFE_XENT_NVIDIA_LIB_DIR}")

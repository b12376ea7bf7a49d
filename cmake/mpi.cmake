# SPDX-License-Identifier: MIT
# libmproc-mpi (include/mproc/mpi.h, src/mpi): the Pool with MPI ranks as
# workers.  Built only when MPI is found; libmproc never depends on it.
option(MPROC_BUILD_MPI "Build libmproc-mpi when MPI is found" ON)
if(NOT MPROC_BUILD_MPI)
  return()
endif()
find_package(MPI COMPONENTS C QUIET)
if(NOT MPI_C_FOUND)
  message(STATUS "MPI not found: libmproc-mpi is not built (apt-get install libopenmpi-dev openmpi-bin)")
  return()
endif()
message(STATUS "MPI found: building libmproc-mpi")
add_library(mproc_mpi SHARED ${PROJECT_SOURCE_DIR}/src/mpi/mpi_pool.c)
target_link_libraries(mproc_mpi PUBLIC mproc MPI::MPI_C)
target_compile_options(mproc_mpi PRIVATE -fvisibility=hidden)
target_compile_definitions(mproc_mpi PRIVATE MPROC_BUILDING=1)
target_include_directories(mproc_mpi PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(mproc_mpi PROPERTIES OUTPUT_NAME mproc-mpi
  VERSION ${PROJECT_VERSION} SOVERSION ${MPROC_SOVERSION})
add_library(mproc::mproc_mpi ALIAS mproc_mpi)
# not in mprocTargets: that export would then need MPI::MPI_C in every
# consumer of find_package(mproc); use pkg-config mproc-mpi
install(TARGETS mproc_mpi LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/mproc/mpi.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mproc)
configure_file(${PROJECT_SOURCE_DIR}/cmake/mproc-mpi.pc.in ${PROJECT_BINARY_DIR}/mproc-mpi.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mproc-mpi.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# A program of the MPI pool: linked with the shared libraries (the ranks
# take over in libmproc-mpi's constructor).
function(mproc_mpi_program name src dir)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE mproc_mpi)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${dir})
endfunction()

if(MPROC_BUILD_EXAMPLES)
  mproc_mpi_program(mpi_pool ${PROJECT_SOURCE_DIR}/examples/mpi/mpi_pool.c ${PROJECT_BINARY_DIR}/examples)
endif()
if(MPROC_BUILD_BENCH)
  mproc_mpi_program(bench_mpi_pool ${PROJECT_SOURCE_DIR}/bench/mpi/bench_mpi_pool.c ${PROJECT_BINARY_DIR}/bench)
endif()
if(MPROC_BUILD_TESTS)
  # tests/mpi/mpi_test_*.c: programs run under mpirun by tests/mpi/test_mpi.sh
  file(GLOB mpi_tests CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/mpi/mpi_test_*.c)
  foreach(src ${mpi_tests})
    get_filename_component(name ${src} NAME_WE)
    mproc_mpi_program(${name} ${src} ${PROJECT_BINARY_DIR}/tests)
  endforeach()
  # the same program as another build (another build-id): MP_EBADREF
  if(TARGET mpi_test_pool)
    mproc_mpi_program(mpi_test_pool_other ${PROJECT_SOURCE_DIR}/tests/mpi/mpi_test_pool.c ${PROJECT_BINARY_DIR}/tests)
    target_compile_definitions(mpi_test_pool_other PRIVATE MPI_TEST_OTHER_BUILD=1)
  endif()
endif()

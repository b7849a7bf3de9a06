# Turns a bpf/*.bpf.c into an object (clang -target bpf) and a libbpf skeleton
# header (bpftool gen skeleton), exposed as the INTERFACE target bpf_<name>.
# Idea from libbpf-bootstrap's FindBpfObject.cmake; written for this tree.

execute_process(COMMAND ${CMAKE_C_COMPILER} -dumpmachine
                OUTPUT_VARIABLE XDPLB_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT XDPLB_MULTIARCH)
  execute_process(COMMAND gcc -dumpmachine
                  OUTPUT_VARIABLE XDPLB_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()

set(XDPLB_BPF_CFLAGS -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -Wall -Werror
    -Wno-unused-function -Wno-compare-distinct-pointer-types
    -I${PROJECT_SOURCE_DIR}/bpf/include -I${PROJECT_SOURCE_DIR}/bpf/shared
    -I${PROJECT_SOURCE_DIR}/bpf -I/usr/include/${XDPLB_MULTIARCH})

set(XDPLB_BPF_OUT ${PROJECT_BINARY_DIR}/bpf)
file(MAKE_DIRECTORY ${XDPLB_BPF_OUT})

function(xdplb_bpf_object name src)
  set(obj ${XDPLB_BPF_OUT}/${name}.bpf.o)
  set(skel ${XDPLB_BPF_OUT}/${name}.skel.h)
  file(GLOB bpf_headers CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/bpf/include/*.h ${PROJECT_SOURCE_DIR}/bpf/shared/*.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${XDPLB_CLANG} ${XDPLB_BPF_CFLAGS} -c ${src} -o ${obj}
    DEPENDS ${src} ${bpf_headers}
    COMMENT "BPF ${name}.bpf.o"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${XDPLB_BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}
    DEPENDS ${obj}
    COMMENT "skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(bpf_${name}_gen DEPENDS ${skel})
  add_library(bpf_${name} INTERFACE)
  add_dependencies(bpf_${name} bpf_${name}_gen)
  target_include_directories(bpf_${name} INTERFACE ${XDPLB_BPF_OUT})
  target_link_libraries(bpf_${name} INTERFACE PkgConfig::LIBBPF)
  if(NOT "NO_INSTALL" IN_LIST ARGN)
    install(FILES ${obj} DESTINATION lib/xdplb)
  endif()
endfunction()

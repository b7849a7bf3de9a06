# Install layout and the Debian package (CPack DEB).
#
#   cmake --install build            -> ${prefix}/sbin/xdplb, ${prefix}/lib/xdplb/*.bpf.o,
#                                       the unit, /etc/xdplb/xdplb.toml, docs
#   (cd build && cpack)              -> build/xdplb_<version>_amd64.deb
#
# The default prefix is /usr, not /usr/local: xdplb is a system daemon whose
# unit names its binary and config by absolute path, and the package must
# place them where the unit says. Choose another prefix at configure time
# (-DCMAKE_INSTALL_PREFIX=...): the installed unit is generated with the
# paths that prefix implies.
include(GNUInstallDirs)

# The unit as installed: the source unit names /usr/sbin/xdplb and
# /etc/xdplb/, the paths of the package; another prefix rewrites them so the
# installed unit never names a binary that is not there.
set(XDPLB_INSTALL_BIN ${CMAKE_INSTALL_FULL_SBINDIR}/xdplb)
set(XDPLB_INSTALL_CONFDIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/xdplb)
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  # Debian 12's systemd (252) and its packages use /lib/systemd/system.
  set(XDPLB_UNITDIR_DEFAULT /lib/systemd/system)
else()
  set(XDPLB_UNITDIR_DEFAULT ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
set(XDPLB_SYSTEMD_UNITDIR ${XDPLB_UNITDIR_DEFAULT} CACHE PATH "Where the systemd unit is installed")

file(READ ${PROJECT_SOURCE_DIR}/systemd/xdplb.service unit_text)
string(REPLACE "/usr/sbin/xdplb" "${XDPLB_INSTALL_BIN}" unit_text "${unit_text}")
string(REPLACE "/etc/xdplb/" "${XDPLB_INSTALL_CONFDIR}/" unit_text "${unit_text}")
string(REPLACE "file:///usr/share/doc/xdplb/" "file://${CMAKE_INSTALL_FULL_DOCDIR}/" unit_text
               "${unit_text}")
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/systemd/xdplb.service CONTENT "${unit_text}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${PROJECT_SOURCE_DIR}/systemd/xdplb.service)

install(FILES ${PROJECT_BINARY_DIR}/systemd/xdplb.service DESTINATION ${XDPLB_SYSTEMD_UNITDIR})
# The example config, annotated: on a fresh install it is the file to edit. It
# names eth0 and documentation addresses, so the service is not enabled by the
# package; the operator edits it first.
install(FILES ${PROJECT_SOURCE_DIR}/config/xdplb.toml DESTINATION ${XDPLB_INSTALL_CONFDIR})
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/design.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/config/demo.toml DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
# Dashboards and other JSON beside the config (e.g. a Grafana dashboard), when
# there are any; none is required.
file(GLOB xdplb_json CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/config/*.json)
if(xdplb_json)
  install(FILES ${xdplb_json} DESTINATION ${CMAKE_INSTALL_DATADIR}/xdplb)
endif()

# ---- CPack DEB --------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME xdplb)
set(CPACK_PACKAGE_VENDOR xdplb)
set(CPACK_PACKAGE_CONTACT "xdplb maintainers <maintainers@xdplb.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "XDP layer-4 load balancer daemon")
set(CPACK_PACKAGE_DESCRIPTION
    "An XDP program picks a backend for every packet sent to a virtual IP by\n\
Maglev consistent hashing and forwards it in an IP-in-IP tunnel; the daemon\n\
health-checks backends, swaps rings atomically and exports Prometheus metrics.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
# Debian's name: xdplb_<version>_<arch>.deb.
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Runtime Depends from the libraries the binary links (dpkg-shlibdeps, from
# dpkg-dev): libbpf1, libxdp1, libstdc++6, ... with the versions built against.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# bpffs is mounted by systemd itself; iproute2 is what an operator uses to look
# at the attached program (`ip link`), and bpftool at the pinned maps.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "iproute2, bpftool")
# Debug info stays in the build tree; the package ships stripped binaries
# (install(TARGETS) only: the BPF objects keep their BTF, which libbpf needs).
set(CPACK_STRIP_FILES ON)
# /etc/xdplb/xdplb.toml is a conffile: dpkg keeps an operator's edits across
# upgrades (and asks when both sides changed). CPack 3.25 marks nothing as a
# conffile by itself.
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/packaging/conffiles
     CONTENT "${XDPLB_INSTALL_CONFDIR}/xdplb.toml\n")
# Maintainer scripts (packaging/): an upgrade restarts a running daemon (the
# datapath keeps forwarding, the new daemon adopts the pinned maps); removal
# stops it; a fresh install starts nothing. See each script's header.
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/packaging/conffiles ${PROJECT_SOURCE_DIR}/packaging/postinst
    ${PROJECT_SOURCE_DIR}/packaging/prerm ${PROJECT_SOURCE_DIR}/packaging/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "xdplb: CMAKE_INSTALL_PREFIX is ${CMAKE_INSTALL_PREFIX}; a .deb built from this "
                 "tree installs there, not under /usr")
endif()
include(CPack)

# Install layout, used as is by the Debian package (debian/rules):
#
#   cmake --install build            -> ${prefix}/sbin/xdplb, ${prefix}/lib/xdplb/*.bpf.o,
#                                       the unit, /etc/xdplb/xdplb.toml, docs
#
# The default prefix is /usr, not /usr/local: xdplb is a system daemon whose
# unit names its binary and config by absolute path. Choose another prefix at configure time
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

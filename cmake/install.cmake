# What `cmake --install` (and `make install PREFIX=...`) puts where:
#   include/txmsg/*.h               the public headers
#   LIB/libtxmsg.so.MAJOR.MINOR.PATCH, its SONAME link libtxmsg.so.MAJOR and
#   the development link libtxmsg.so; LIB/libtxmsg.a
#   LIB/pkgconfig/txmsg.pc          pkg-config
#   LIB/cmake/txmsg/                find_package(txmsg) -> txmsg::txmsg
#   bin/txmsg, bin/txmsg-relay      the operations tool and the relay
#   libexec/txmsg/                  the example services
#   share/man, lib/systemd/system, share/doc/txmsg/examples   (below)
# LIB is lib/<multiarch> (lib/x86_64-linux-gnu) on Debian under every
# prefix (cmake/package.cmake says why), else lib.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/txmsg ${TXM_GENERATED_INCLUDE}/txmsg
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev FILES_MATCHING PATTERN "*.h")
install(TARGETS txmsg LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime
        NAMELINK_COMPONENT dev)
install(TARGETS txmsg_static ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(TARGETS txmsg-cli txmsg-relay RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        COMPONENT runtime)
install(TARGETS customers-service orders-service
        RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/txmsg COMPONENT runtime)

# txmsg.pc names the prefix it is installed under, known only at install
# time (`cmake --install --prefix` may change it): the rest is filled in now
# and the prefix when installing, written straight into the destination so
# that two installs from one build folder at once cannot mix their prefixes.
set(TXM_PC_PREFIX "@TXM_PC_PREFIX@")
configure_file(${CMAKE_CURRENT_LIST_DIR}/txmsg.pc.in ${CMAKE_BINARY_DIR}/txmsg.pc.in @ONLY)
install(CODE "set(TXM_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(pc \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/txmsg.pc\")
  message(STATUS \"Installing: \${pc}\")
  configure_file(\"${CMAKE_BINARY_DIR}/txmsg.pc.in\" \"\${pc}\" @ONLY)
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${pc}\")" COMPONENT dev)

# The CMake package finds its files relative to where it is installed.
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/txmsgConfig.cmake.in
  ${CMAKE_BINARY_DIR}/txmsgConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/txmsg
  PATH_VARS CMAKE_INSTALL_LIBDIR CMAKE_INSTALL_INCLUDEDIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/txmsgConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/txmsgConfig.cmake ${CMAKE_BINARY_DIR}/txmsgConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/txmsg COMPONENT dev)

# Man pages: share/man/man1/txmsg.1, txmsg-relay.1, share/man/man7/txmsg.7.
include(${CMAKE_CURRENT_LIST_DIR}/man.cmake)

# systemd units in lib/systemd/system (systemd reads /usr/local/lib/systemd/system
# too), their programs' paths made those of the prefix at install time, and
# example environment files in share/doc/txmsg/examples. The units are
# written straight into the destination, not through the build folder, so
# that installs to two prefixes at once (cpack and a test) cannot mix.
foreach(unit txmsg-relay@.service txmsg-service@.service)
  install(CODE "set(dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
    file(READ \"${CMAKE_SOURCE_DIR}/packaging/systemd/${unit}\" u)
    string(REPLACE \"/usr/bin/\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/\" u \"\${u}\")
    string(REPLACE \"/usr/libexec/\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBEXECDIR}/\" u \"\${u}\")
    message(STATUS \"Installing: \${dir}/${unit}\")
    file(WRITE \"\${dir}/${unit}\" \"\${u}\")
    file(CHMOD \"\${dir}/${unit}\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${dir}/${unit}\")" COMPONENT runtime)
endforeach()
install(FILES ${CMAKE_SOURCE_DIR}/packaging/systemd/customers.env
              ${CMAKE_SOURCE_DIR}/packaging/systemd/orders.env
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples COMPONENT runtime)

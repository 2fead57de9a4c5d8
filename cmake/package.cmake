# `make package` (cpack -G DEB in the build folder) makes txmsg_VERSION_ARCH.deb:
# everything `cmake --install` puts under /usr, plus the Debian files
# (copyright, changelog) and the systemd units. Included before install.cmake:
# it chooses the library folder GNUInstallDirs uses there.

# Debian keeps libraries in lib/<multiarch> under any prefix (ld.so.conf and
# pkg-config search /usr/local/lib/<multiarch> too); GNUInstallDirs picks it
# only for the prefix /usr given at configure time, so a package made from a
# build configured for /usr/local would put them in /usr/lib.
if(CMAKE_LIBRARY_ARCHITECTURE AND NOT DEFINED CACHE{CMAKE_INSTALL_LIBDIR})
  set(CMAKE_INSTALL_LIBDIR "lib/${CMAKE_LIBRARY_ARCHITECTURE}" CACHE PATH
      "Object code libraries (lib)")
endif()
include(GNUInstallDirs)

set(TXM_PACKAGE_MAINTAINER "txmsg maintainers <maintainers@users.noreply.r-seed-4b443a76.example>"
    CACHE STRING "Maintainer field of the Debian package")
set(TXM_PACKAGE_HOMEPAGE "" CACHE STRING "Homepage field of the Debian package (none if empty)")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME txmsg)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${TXM_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "transactional messaging for C services")
# The long description; CPack puts the summary first and indents the lines.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "txmsg lets a C service change its database and publish events about the
change without losing or doubling a message: the Transactional Outbox,
Transaction Log Tailing, Idempotent Consumer (inbox) and Unit of Work
patterns, on SQLite with an embedded broker, or on PostgreSQL and NATS
JetStream.

This package holds the library (libtxmsg.so.0, libtxmsg.a, headers,
pkg-config and CMake files), the relay txmsg-relay, the operations tool
txmsg, the example Customers and Orders services, man pages and systemd
units.")
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # txmsg_0.1.0_amd64.deb
if(TXM_PACKAGE_HOMEPAGE)
  set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${TXM_PACKAGE_HOMEPAGE}")
endif()
# dpkg-shlibdeps computes Depends from the libraries the programs link:
# libsqlite3-0, libpq5, libnats3.4, libjansson4, libmicrohttpd12 and libc6,
# with the versions the build saw (tests/install/package_test.sh checks them).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The shlibs file tells dpkg-shlibdeps of other packages that libtxmsg.so.0
# comes from txmsg.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# The ldconfig trigger instead of CPack's postinst and postrm running
# ldconfig (lintian wants the trigger); our own scripts reload systemd.
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_SOURCE_DIR}/packaging/debian/triggers
    ${CMAKE_SOURCE_DIR}/packaging/debian/postinst ${CMAKE_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Debian ships stripped programs; the build tree keeps the symbols.
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DIRECTORY "${CMAKE_BINARY_DIR}/package")
set(CPACK_OUTPUT_CONFIG_FILE "${CMAKE_BINARY_DIR}/CPackConfig.cmake")
include(CPack)

# The files every Debian package has in /usr/share/doc/<package>: the
# copyright, and the changelog compressed with gzip -9n (lintian checks both).
configure_file(${CMAKE_SOURCE_DIR}/packaging/debian/changelog.in
               ${CMAKE_BINARY_DIR}/packaging/changelog @ONLY)
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/packaging/changelog.gz
  COMMAND sh -c "gzip -9nc changelog > changelog.gz"
  DEPENDS ${CMAKE_BINARY_DIR}/packaging/changelog
  WORKING_DIRECTORY ${CMAKE_BINARY_DIR}/packaging VERBATIM)
add_custom_target(txmsg-package-docs ALL DEPENDS ${CMAKE_BINARY_DIR}/packaging/changelog.gz)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/debian/copyright
              ${CMAKE_BINARY_DIR}/packaging/changelog.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)

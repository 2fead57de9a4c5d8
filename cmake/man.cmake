# Man pages, written in scdoc (man/*.scd) and turned into roff at build time:
# build/man/txmsg.1, txmsg-relay.1 and txmsg.7, installed to share/man
# compressed (gzip -9n, as Debian wants).
# scripts/install-deps installs scdoc; without it the pages are not built,
# and tests/install/man_test.sh fails saying so.
find_program(SCDOC scdoc)
set(TXM_MAN_PAGES txmsg.1 txmsg-relay.1 txmsg.7)
set(TXM_MAN_DIR ${CMAKE_BINARY_DIR}/man)
if(SCDOC)
  set(outputs)
  foreach(page ${TXM_MAN_PAGES})
    add_custom_command(OUTPUT ${TXM_MAN_DIR}/${page} ${TXM_MAN_DIR}/${page}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${TXM_MAN_DIR}
      COMMAND sh -c "\"$0\" < \"$1\" > \"$2\" && gzip -9nc \"$2\" > \"$2.gz\"" ${SCDOC}
              ${CMAKE_SOURCE_DIR}/man/${page}.scd ${TXM_MAN_DIR}/${page}
      DEPENDS ${CMAKE_SOURCE_DIR}/man/${page}.scd
      COMMENT "scdoc man/${page}.scd" VERBATIM)
    list(APPEND outputs ${TXM_MAN_DIR}/${page})
    string(REGEX REPLACE ".*\\." "" section ${page})
    install(FILES ${TXM_MAN_DIR}/${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section}
            COMPONENT runtime)
  endforeach()
  add_custom_target(txmsg-man ALL DEPENDS ${outputs})
else()
  message(STATUS "scdoc not found (scripts/install-deps installs it): man pages not built")
endif()

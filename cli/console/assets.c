/* The page: GET / answers index.html and GET /static/<path> the other
 * files of cli/console/web/ embedded in the binary, with their content
 * type and the page's security headers. Unknown files get 404. */
#include <stdio.h>
#include <string.h>

#include "assets.h"
#include "console.h"

#define STATIC_DEPTH_MAX 4 /* folders under /static/ served: a/b/c/file */

static const char *content_type(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

static const console_asset *find(const char *path)
{
    for (size_t i = 0; i < console_assets_count; i++)
        if (strcmp(console_assets[i].path, path) == 0)
            return &console_assets[i];
    return NULL;
}

static void serve(txm_http_request *req, const char *path)
{
    const console_asset *a = find(path);
    if (a == NULL && strcmp(path, "index.html") == 0)
        console_reply_error(req, 404, "NOT_BUILT_IN",
                            "the console's page is not built into this txmsg: only the API "
                            "under /api/ is served");
    else if (a == NULL)
        console_reply_error(req, 404, "NOT_FOUND", "no file %s", path);
    else
        console_reply_page(req, 200, content_type(a->path), a->data, a->len);
}

static void get_index(void *ctx, txm_http_request *req)
{
    if (console_host_ok(ctx, req))
        serve(req, "index.html");
}

/* /static/a/b/c: the parameters joined with '/'. Path segments were
 * decoded one by one, so a "%2F" inside one cannot name another folder,
 * and ".." only ever names a file called "..", which is not there. */
static void get_static(void *ctx, txm_http_request *req)
{
    static const char *const names[STATIC_DEPTH_MAX] = {"a", "b", "c", "d"};
    if (!console_host_ok(ctx, req))
        return;
    char path[STATIC_DEPTH_MAX * (TXM_HTTP_PARAM_VALUE_MAX + 1) + 1] = "";
    size_t len = 0;
    for (int i = 0; i < STATIC_DEPTH_MAX; i++) {
        const char *seg = txm_http_request_param(req, names[i]);
        if (seg == NULL)
            break;
        int n = snprintf(path + len, sizeof path - len, "%s%s", len > 0 ? "/" : "", seg);
        if (n < 0 || (size_t)n >= sizeof path - len)
            break;
        len += (size_t)n;
    }
    serve(req, path);
}

txm_status console_assets_routes(console *c, txm_error *err)
{
    static const char *const patterns[STATIC_DEPTH_MAX] = {
        "/static/:a", "/static/:a/:b", "/static/:a/:b/:c", "/static/:a/:b/:c/:d"};
    txm_status st = txm_http_route(c->srv, "GET", "/", get_index, c, err);
    for (int i = 0; st == TXM_OK && i < STATIC_DEPTH_MAX; i++)
        st = txm_http_route(c->srv, "GET", patterns[i], get_static, c, err);
    return st;
}

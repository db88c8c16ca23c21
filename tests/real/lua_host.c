/* The smallest host of the Lua 5.4 interpreter (lua-src ships the library,
 * not lua.c): runs the script named on the command line, or the scenario
 * this build was made for. Everything below main is Lua's own C code. */
#include <stdio.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : LUA_SCENARIO;
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fputs("cannot create a Lua state\n", stderr);
    return 1;
  }
  luaL_openlibs(L);
  int status = luaL_dofile(L, script);
  if (status != LUA_OK)
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}

// The pages import their stylesheet for esbuild to bundle (src/style.css): it
// exports nothing to the script.
declare module '*.css' {}

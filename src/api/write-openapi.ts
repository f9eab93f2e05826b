// `npm run openapi`: regenerate openapi.yaml from the zod schemas.
import fs from 'node:fs';
import { OPENAPI_PATH, renderOpenApiYaml } from './openapi.js';
import { packageVersion } from './version.js';

fs.writeFileSync(OPENAPI_PATH, await renderOpenApiYaml(packageVersion()));
console.log(`wrote ${OPENAPI_PATH}`);

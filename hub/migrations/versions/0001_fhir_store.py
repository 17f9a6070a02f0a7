"""fhir store: resources, versions, token index

Revision ID: 0001_fhir_store
Revises: (none)
Create Date: 2026-11-23 13:19:07.057905
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001_fhir_store'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_resource',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('res_pk', name=op.f('pk_hub_resource')),
    sa.UniqueConstraint('resource_type', 'res_id', name='uq_hub_resource_type_id')
    )
    with op.batch_alter_table('hub_resource', schema=None) as batch_op:
        batch_op.create_index('ix_hub_resource_type_updated', ['resource_type', 'last_updated'], unique=False)

    op.create_table('hub_idx_token',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('system', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('hash_sys_value', sa.BigInteger(), nullable=False),
    sa.Column('hash_value', sa.BigInteger(), nullable=False),
    sa.Column('hash_sys', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['hub_resource.res_pk'], name=op.f('fk_hub_idx_token_res_pk_hub_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('hub_idx_token', schema=None) as batch_op:
        batch_op.create_index('ix_hub_idx_token_res', ['res_pk'], unique=False)
        batch_op.create_index('ix_hub_idx_token_sys', ['hash_sys', 'res_pk'], unique=False)
        batch_op.create_index('ix_hub_idx_token_sys_value', ['hash_sys_value', 'res_pk'], unique=False)
        batch_op.create_index('ix_hub_idx_token_value', ['hash_value', 'res_pk'], unique=False)

    op.create_table('hub_resource_version',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('last_updated', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['res_pk'], ['hub_resource.res_pk'], name=op.f('fk_hub_resource_version_res_pk_hub_resource'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('res_pk', 'version_id', name=op.f('pk_hub_resource_version'))
    )
    with op.batch_alter_table('hub_resource_version', schema=None) as batch_op:
        batch_op.create_index('ix_hub_resource_version_type_updated', ['resource_type', 'last_updated'], unique=False)
        batch_op.create_index('ix_hub_resource_version_updated', ['last_updated'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('hub_resource_version', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_resource_version_updated')
        batch_op.drop_index('ix_hub_resource_version_type_updated')

    op.drop_table('hub_resource_version')
    with op.batch_alter_table('hub_idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_idx_token_value')
        batch_op.drop_index('ix_hub_idx_token_sys_value')
        batch_op.drop_index('ix_hub_idx_token_sys')
        batch_op.drop_index('ix_hub_idx_token_res')

    op.drop_table('hub_idx_token')
    with op.batch_alter_table('hub_resource', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_resource_type_updated')

    op.drop_table('hub_resource')
